"""Levelling of rendered WAVs (`engine.levels`) on real notes of the project's rendered corpus."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from notono_live.engine import levels, render

RATE = 44_100


@pytest.fixture(scope="module")
def notes(small_corpus) -> list[np.ndarray]:
    """Every family's first note at MIDI 24 and 72, at 44.1 kHz: sustained and decaying sounds, low
    and high, some with quiet tails that sit near BS.1770's -70 LUFS gate once raised or lowered."""
    chosen = []
    for family in ("bass", "keyboard", "mallet", "organ", "string", "guitar"):
        for pitch in (24, 72):
            found = sorted((small_corpus / "audio").glob(f"{family}_*-{pitch:03d}-100.wav"))
            if found:
                audio, rate = sf.read(str(found[0]), dtype="float64")
                chosen.append(render.resample_for_output(audio.astype(np.float32), RATE, clip=False))
    assert len(chosen) >= 8
    return chosen


def test_the_loudness_under_a_gain_from_the_gating_blocks_is_the_measured_one(notes):
    crossed = 0
    for audio in notes:
        measured, blocks = levels.measure_loudness(audio, RATE)
        assert measured is not None and blocks is not None
        assert levels.gated_loudness(blocks) == pytest.approx(measured, abs=1e-9)
        for gain_db in (-45.0, -20.0, -3.0, 6.0, 30.0):
            expected = levels.loudness(audio * 10.0 ** (gain_db / 20.0), RATE)
            got = levels.gated_loudness(blocks, gain_db)
            if expected is None:
                assert got is None
            else:
                assert got == pytest.approx(expected, abs=1e-6), (gain_db, got, expected)
                crossed += abs(expected - measured - gain_db) > 0.01   # a block crossed a gate
    assert crossed > 0   # the notes exercise the gates, not only the plain shift


def test_every_note_at_any_level_comes_out_at_the_target_under_the_ceiling(notes):
    for audio in notes:
        for gain_db in (-30.0, 0.0, 12.0):
            out, level = levels.normalise(audio * 10.0 ** (gain_db / 20.0), RATE)
            assert out.dtype == np.float32 and np.abs(out).max() <= 1.0
            loudness = levels.loudness(out, RATE)
            peak_dbtp = 20.0 * np.log10(levels.true_peak(out, RATE))
            assert loudness == pytest.approx(level.final_lufs, abs=0.01)
            assert peak_dbtp == pytest.approx(level.final_true_peak_dbtp, abs=0.01)
            assert peak_dbtp < levels.TRUE_PEAK_CEILING_DBTP
            if level.limited_db == 0.0:
                assert abs(loudness - levels.TARGET_LUFS) < 0.1, (gain_db, level)
            else:   # limited: at most a little short of the target, never over the ceiling
                assert levels.TARGET_LUFS - 1.0 < loudness < levels.TARGET_LUFS + 0.1, (gain_db, level)


def test_the_decoded_figures_are_the_dc_free_sounds_and_give_back_the_decoders_level(notes):
    recovered = 0
    for audio in notes[:4]:
        offset = audio.astype(np.float64) + 0.05   # -26 dBFS of DC: more than any decoded corpus note had
        out, level = levels.normalise(offset, RATE)
        clean = levels.remove_dc(offset, RATE)
        assert level.dc_dbfs == pytest.approx(levels.dc_dbfs(offset), abs=1e-9)
        assert level.loudness_lufs == pytest.approx(levels.loudness(clean, RATE), abs=1e-9)
        assert level.true_peak_dbtp == pytest.approx(20.0 * np.log10(levels.true_peak(clean, RATE)), abs=1e-9)
        # the decoder's level is recoverable from the WAV and the gain, as the metadata promises
        if level.limited_db == 0.0:
            raw = out.astype(np.float64) / 10.0 ** (level.gain_db / 20.0)
            assert levels.loudness(raw, RATE) == pytest.approx(level.loudness_lufs, abs=0.01)
            recovered += 1
    assert recovered > 0


def test_removing_the_dc_at_the_decoders_rate_before_resampling_levels_alike(small_corpus):
    found = sorted((small_corpus / "audio").glob("*-048-100.wav"))[:3]
    assert found
    for path in found:
        decoded = sf.read(str(path), dtype="float32")[0] + np.float32(0.011)   # -39 dBFS: the most DC a decoded corpus note had
        at_output, level = levels.normalise(render.resample_for_output(decoded, RATE, clip=False), RATE)
        clean = levels.remove_dc(decoded, 16_000)
        early, early_level = levels.normalise(render.resample_for_output(clean, RATE, clip=False), RATE,
                                              dc_removed=levels.dc_dbfs(decoded))
        assert early_level.dc_dbfs == pytest.approx(level.dc_dbfs, abs=0.01)
        assert early_level.loudness_lufs == pytest.approx(level.loudness_lufs, abs=0.01)
        assert early_level.final_lufs == pytest.approx(level.final_lufs, abs=0.01)
        assert early_level.final_true_peak_dbtp < levels.TRUE_PEAK_CEILING_DBTP
        assert levels.dc_dbfs(early) < -60.0
        # alike but at the two ends, where resampling the DC step (0 before the sound, the offset in it)
        # rang in the other order
        edge = RATE // 50
        middle = slice(edge, -edge)
        assert np.max(np.abs(early[middle] - at_output[middle])) < 1e-3 * np.max(np.abs(at_output))
