"""Mel-IF / linear-IF transforms and normalisation, on real WAVs rendered by the corpus builder."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from notono_live.audio_io import load_audio
from notono_live.constants import (
    GANSYNTH_BREAK_FREQUENCY_HZ,
    IMAGE_FREQ,
    IMAGE_TIME,
    MEL_FMAX_HZ,
    N_FFT,
    NUM_SAMPLES,
    PHASE_ITERATIONS,
    PHASE_THRESHOLD_LOG_POWER,
    SAMPLE_RATE,
    STFT_FRAMES,
)
from notono_live.representation import (
    LinearIF,
    MelIF,
    NormalizationStats,
    apply_phase_threshold,
    mel_band_centres_hz,
    mel_filterbank,
    mel_scale,
    pseudo_inverse,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


NOTES = ("bass_synthetic_000-036-100", "keyboard_synthetic_000-060-100", "flute_synthetic_001-072-100",
         "mallet_synthetic_000-084-100", "organ_synthetic_001-024-100", "vocal_synthetic_000-048-100")


@pytest.fixture(scope="module")
def audio_batch(small_corpus) -> torch.Tensor:
    return torch.from_numpy(np.stack([load_audio(small_corpus / "audio" / f"{n}.wav") for n in NOTES]))


@pytest.fixture(scope="module")
def mel_if() -> MelIF:
    return MelIF()


def _stft_magnitude(audio: torch.Tensor) -> torch.Tensor:
    return torch.stft(audio, N_FFT, 512, window=torch.hann_window(N_FFT), return_complex=True).abs()


def test_forward_shapes_and_ranges_on_rendered_notes(mel_if, audio_batch):
    image = mel_if(audio_batch)
    assert image.shape == (len(NOTES), 2, IMAGE_FREQ, IMAGE_TIME)
    assert image.dtype == torch.float32 and torch.isfinite(image).all()
    log_power, inst_freq = image[:, 0], image[:, 1]
    assert log_power.min() >= PHASE_THRESHOLD_LOG_POWER
    assert log_power.amax(dim=(1, 2)).min() > 0.0          # every note is audible, far above the floor
    assert log_power.max() < 20.0                             # |X|² of a [-1, 1] signal is at most 1024²
    assert inst_freq.abs().max() <= 1.0 + 1e-5
    # the two padding frames repeat the last STFT frame
    assert torch.equal(image[..., STFT_FRAMES:], image[..., STFT_FRAMES - 1:STFT_FRAMES].expand(-1, -1, -1, 2))
    # a low note's energy sits in the low rows: the bass note's loudest row is below its 3rd harmonic
    centres = mel_band_centres_hz()
    loudest_row = int(log_power[0, :, 20].argmax())
    assert centres[loudest_row] < 3 * 440.0 * 2 ** ((36 - 69) / 12)


def test_forward_is_batched_like_single_items(mel_if, audio_batch):
    batched = mel_if(audio_batch[:3])
    single = torch.cat([mel_if(audio_batch[i]) for i in range(3)])
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-4)


def test_inverse_shapes_and_round_trip_quality(mel_if, audio_batch):
    restored = mel_if.inverse(mel_if(audio_batch))
    assert restored.shape == (len(NOTES), NUM_SAMPLES) and restored.dtype == torch.float32
    assert torch.isfinite(restored).all()
    reference, output = _stft_magnitude(audio_batch), _stft_magnitude(restored)
    convergence = torch.linalg.norm((reference - output).flatten(1), dim=1) / torch.linalg.norm(reference.flatten(1), dim=1)
    # the mel projection loses detail, but the magnitude must come back close on every note
    assert convergence.max() < 0.35, convergence
    assert convergence.median() < 0.1, convergence
    # the waveform itself (phase included) is recovered well on most notes, not just the magnitude
    snr = 10 * torch.log10(audio_batch.square().sum(1) / (restored - audio_batch).square().sum(1))
    assert snr.median() > 15.0, snr


def test_the_pseudo_inverse_is_the_moore_penrose_one_as_its_ridge_vanishes():
    rng = np.random.default_rng(0)
    wide = rng.random((40, 64)) * (np.abs(np.arange(40)[:, None] - np.arange(64)[None] * 0.6) < 3)
    assert np.allclose(pseudo_inverse(wide, ridge=1e-12), np.linalg.pinv(wide), atol=1e-8)


def test_the_sparse_projections_on_a_cpu_are_as_exact_as_the_dense_ones(mel_if, audio_batch):
    """On a CPU the filterbanks and pseudo-inverses are multiplied as CSR matrices without their
    entries under 1e-7 of the largest. On what they multiply in the transform (real notes' STFT
    power and phase; their image's Mel power and integrated phase, which reaches hundreds of
    radians), each product is as close to the float64 dense product as the float32 dense one is."""
    mats = mel_if._mats(torch.device("cpu"))
    assert all(m.layout == torch.sparse_csr for m in mats.values())
    power, first_phase, increments = mel_if._stft(audio_batch)
    log_mel_power, mel_increments = mel_if._prepare_inverse(mel_if(audio_batch))
    for name, x in (("power", power), ("phase", torch.cat([first_phase, increments], dim=-1)),
                    ("power_pinv", mel_if._power_from_log(log_mel_power)),
                    ("phase_pinv", mel_if._integrate(mel_increments))):
        matrix = torch.from_numpy(mel_if._host[name].copy())
        truth = torch.matmul(matrix, x.double())
        dense_error = (torch.matmul(matrix.float(), x).double() - truth).abs().max()
        sparse_error = (MelIF._project(mats[name], x).double() - truth).abs().max()
        assert sparse_error <= 2 * dense_error + 1e-9 * truth.abs().max(), (name, sparse_error, dense_error)


def test_phase_passes_give_back_the_level_an_inconsistent_if_loses(audio_batch):
    """A decoded IF is no phase's derivative. Blurring the IF in time, as a decoder's smooth output
    does, makes the straight inverse cancel itself; the Griffin-Lim passes give the level back."""
    image = MelIF()(audio_batch)
    blurred = image.clone()
    kernel = torch.ones(1, 1, 5) / 5
    rows = image[:, 1].reshape(-1, 1, IMAGE_TIME)
    blurred[:, 1] = torch.nn.functional.conv1d(rows, kernel, padding=2).reshape(image[:, 1].shape)

    def level_lost(iterations: int) -> torch.Tensor:
        transform = MelIF(phase_iterations=iterations)
        again = transform(transform.inverse(blurred))[:, 0]
        audible = image[:, 0] > image[:, 0].amax(dim=(1, 2), keepdim=True) - 6.0   # within 6 nats of the peak
        return torch.stack([(image[b, 0][audible[b]] - again[b][audible[b]]).mean() for b in range(len(image))])

    assert PHASE_ITERATIONS >= 1                       # the shipped setting refines
    straight, refined = level_lost(0), level_lost(PHASE_ITERATIONS)
    assert straight.median() > 0.5, straight          # the blurred IF alone loses level
    assert (refined < straight).all() and refined.median() < 0.5 * straight.median(), (straight, refined)
    with pytest.raises(ValueError, match="phase_iterations"):
        MelIF(phase_iterations=-1)


def test_linear_if_is_exactly_invertible(audio_batch):
    transform = LinearIF()
    image = transform(audio_batch)
    assert image.shape == (len(NOTES), 2, IMAGE_FREQ, IMAGE_TIME)
    restored = transform.inverse(image)
    snr = 10 * torch.log10(audio_batch.square().sum(1) / (restored - audio_batch).square().sum(1))
    assert snr.min() >= 40.0, snr


def test_thresholding_zeroes_if_exactly_where_level_is_below(audio_batch):
    raw = MelIF(phase_threshold=None)(audio_batch)
    thresholded = MelIF()(audio_batch)
    below = raw[:, 0] < PHASE_THRESHOLD_LOG_POWER
    assert below.any() and (~below).any()              # the real notes have both silent and sounding cells
    assert (thresholded[:, 1][below] == 0).all()
    assert (thresholded[:, 0][below] == PHASE_THRESHOLD_LOG_POWER).all()
    assert torch.equal(thresholded[:, 1][~below], raw[:, 1][~below])
    assert torch.equal(thresholded[:, 0][~below], raw[:, 0][~below])
    assert (raw[:, 1][below] != 0).any()                 # so the zeros above are thresholding's doing


def test_inverse_thresholds_its_input_first(mel_if, audio_batch):
    image = mel_if(audio_batch[:2])
    silent = image[:, 0] <= PHASE_THRESHOLD_LOG_POWER
    noisy = image.clone()
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand(noisy[:, 1].shape, generator=generator) * 2 - 1
    noisy[:, 1] = torch.where(silent, noise, noisy[:, 1])                      # phase noise in silence
    noisy[:, 0] = torch.where(silent, noisy[:, 0] - 3.0, noisy[:, 0])          # and a level below the floor
    torch.testing.assert_close(mel_if.inverse(noisy), mel_if.inverse(image))
    assert not torch.equal(MelIF(phase_threshold=None).inverse(noisy), mel_if.inverse(image))


def test_floor_inverts_to_silence():
    # an all-floor image (what thresholding makes of silence) must come back silent, not as a buzz
    floor = torch.zeros(1, 2, IMAGE_FREQ, IMAGE_TIME)
    floor[:, 0] = PHASE_THRESHOLD_LOG_POWER
    for transform in (MelIF(), LinearIF(phase_threshold=PHASE_THRESHOLD_LOG_POWER)):
        assert transform.inverse(floor).abs().max() == 0


def test_apply_phase_threshold_none_is_identity(mel_if, audio_batch):
    image = MelIF(phase_threshold=None)(audio_batch[:1])
    assert apply_phase_threshold(image, None) is image


def test_mel_scale_maps_1000_hz_to_1000_mel():
    for fb in (240.0, GANSYNTH_BREAK_FREQUENCY_HZ):
        assert mel_scale(1000.0, fb) == pytest.approx(1000.0)
        assert mel_scale(0.0, fb) == 0.0


@pytest.mark.parametrize("limit_hz", [100.0, 250.0, 1000.0])
def test_lower_break_frequency_gives_more_low_rows(limit_hz):
    def expected_rows(fb: float) -> int:
        # equal mel steps: rows centred below f = (f's mel) / (step), with 1026 edges over 0–8000 Hz
        step = mel_scale(MEL_FMAX_HZ, fb) / (IMAGE_FREQ + 1)
        return int(math.ceil(mel_scale(limit_hz, fb) / step)) - 1

    rows = {fb: int((mel_band_centres_hz(fb) < limit_hz).sum()) for fb in (240.0, GANSYNTH_BREAK_FREQUENCY_HZ)}
    assert rows[240.0] == expected_rows(240.0)
    assert rows[GANSYNTH_BREAK_FREQUENCY_HZ] == expected_rows(GANSYNTH_BREAK_FREQUENCY_HZ)
    assert rows[240.0] > rows[GANSYNTH_BREAK_FREQUENCY_HZ]
    # and the transforms use that scale: the filterbank rows peak at those centres
    for fb in (240.0, GANSYNTH_BREAK_FREQUENCY_HZ):
        peak_bins = MelIF(fb).filterbank.argmax(axis=1)
        peak_hz = peak_bins * SAMPLE_RATE / N_FFT
        assert np.abs(peak_hz - mel_band_centres_hz(fb)).max() <= SAMPLE_RATE / N_FFT / 2 + 1e-9


def test_low_frequency_rows_change_the_image(audio_batch):
    # the bass note (MIDI 36, 65 Hz) spreads over many more rows with fb 240 than with GANSynth's 700
    low = {fb: MelIF(fb)(audio_batch[:1]) for fb in (240.0, GANSYNTH_BREAK_FREQUENCY_HZ)}
    rows_below_200 = {fb: int((mel_band_centres_hz(fb) < 200.0).sum()) for fb in low}
    assert rows_below_200[240.0] > 1.5 * rows_below_200[GANSYNTH_BREAK_FREQUENCY_HZ]
    for fb, image in low.items():
        sounding = (image[0, 0, : rows_below_200[fb]] > PHASE_THRESHOLD_LOG_POWER).any(dim=1)
        assert sounding.sum() >= 0.9 * rows_below_200[fb]


@pytest.mark.parametrize("fb", [240.0, GANSYNTH_BREAK_FREQUENCY_HZ])
def test_filterbank_has_no_empty_row_and_minimum_width(fb):
    weights = mel_filterbank(fb, 1.5)
    assert weights.shape == (IMAGE_FREQ, IMAGE_FREQ)
    assert (weights.sum(axis=1) > 0).all()
    assert weights.max() <= 1.0 + 1e-12 and weights.min() >= 0.0
    # widened low rows span at most 2 linear bins (width 1.5 bins); without widening rows would be empty
    assert ((weights[:50] > 0).sum(axis=1) <= 2).all()
    with pytest.raises(ValueError, match="min_band_width_bins"):
        mel_filterbank(fb, 1.0)


def test_bad_shapes_raise_clear_errors(mel_if):
    with pytest.raises(ValueError, match="64000"):
        mel_if(torch.zeros(2, 1000))
    with pytest.raises(ValueError, match="1024"):
        mel_if.inverse(torch.zeros(1, 2, 512, 128))


def test_normalization_stats_round_trip(mel_if, audio_batch):
    images = [mel_if(audio_batch[i:i + 2]) for i in range(0, len(NOTES), 2)]
    stats = NormalizationStats.compute(images)
    assert stats.log_power_min == pytest.approx(PHASE_THRESHOLD_LOG_POWER)
    assert -1.0 <= stats.if_min < 0 < stats.if_max <= 1.0
    everything = torch.cat(images)
    normalised = stats.normalize(everything)
    assert normalised[:, 0].min() == pytest.approx(-0.8, abs=1e-5)
    assert normalised[:, 0].max() == pytest.approx(0.8, abs=1e-5)
    assert normalised[:, 1].min() == pytest.approx(-1.0, abs=1e-5)
    assert normalised[:, 1].max() == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(stats.denormalize(normalised), everything, atol=1e-4, rtol=1e-5)
    assert NormalizationStats.from_dict(stats.to_dict()) == stats
    # one image without a batch axis works too
    assert stats.normalize(everything[0]).shape == everything[0].shape


def test_normalization_stats_reject_bad_input():
    with pytest.raises(ValueError, match="if_max"):
        NormalizationStats.from_dict({"log_power_min": -13.0, "log_power_max": 5.0, "if_min": -1.0})
    with pytest.raises(ValueError, match="log_power_max"):
        NormalizationStats(1.0, 1.0, -1.0, 1.0)
    with pytest.raises(ValueError, match="no images"):
        NormalizationStats.compute([])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_runs_on_cuda_like_on_cpu(mel_if, audio_batch):
    on_gpu = MelIF(device="cuda")
    image = on_gpu(audio_batch[:2])
    assert image.device.type == "cuda"
    torch.testing.assert_close(image.cpu(), mel_if(audio_batch[:2]), atol=2e-3, rtol=1e-3)
    assert on_gpu.inverse(image).device.type == "cuda"
