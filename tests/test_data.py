"""NSynth-layout reader, split, Dataset and cache; the SoundFont corpus builder; audio I/O; round trip.

Every WAV here is rendered by the real builder, from the default SoundFont or from a tiny real
SoundFont 2 file written below (one looping sine preset, one silent preset, the rest missing).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from notono_live.audio_io import ResampledAudioWarning, load_audio, write_wav_atomic
from notono_live.cli import main as cli_main
from notono_live.constants import FAMILIES, NUM_SAMPLES, PHASE_THRESHOLD_LOG_POWER, SAMPLE_RATE
from notono_live.data import (
    NSynthDataset,
    family_to_index,
    index_to_family,
    index_to_pitch,
    pitch_to_index,
    read_examples,
    split_notes,
)
from notono_live.data.render import MANIFEST_NAME, RenderSettings, default_soundfont, render_corpus
from notono_live.representation import MelIF


pytestmark = pytest.mark.usefixtures("one_torch_thread")


NSYNTH_FIELDS = {"note", "note_str", "pitch", "velocity", "instrument", "instrument_str", "instrument_family",
                 "instrument_family_str", "instrument_source", "instrument_source_str", "sample_rate",
                 "qualities", "qualities_str"}


# --- a tiny but real SoundFont 2 file -------------------------------------------------------

def _chunk(tag: bytes, payload: bytes) -> bytes:
    payload += b"\0" * (len(payload) % 2)
    return tag + struct.pack("<I", len(payload)) + payload


def _name(text: str) -> bytes:
    return text.encode("ascii")[:19].ljust(20, b"\0")


def tiny_soundfont(presets: dict[int, np.ndarray], rate: int = 44_000, root_key: int = 69) -> bytes:
    """SF2 bytes with one looping mono sample (recorded at MIDI ``root_key``) per bank-0 program."""
    smpl = shdr = inst = ibag = igen = phdr = pbag = pgen = b""
    offset = 0
    for index, (program, wave) in enumerate(sorted(presets.items())):
        pcm = np.round(np.clip(wave, -1, 1) * 32767).astype("<i2")
        start, end = offset, offset + len(pcm)
        smpl += pcm.tobytes() + b"\0" * 92                        # the format wants 46 zero samples after each
        offset = end + 46
        shdr += _name(f"s{index}") + struct.pack("<IIIIIBbHH", start, end, start + 100, end - 100, rate,
                                                  root_key, 0, 0, 1)
        inst += _name(f"i{index}") + struct.pack("<H", index)
        ibag += struct.pack("<HH", 2 * index, 0)
        igen += struct.pack("<HHHH", 54, 1, 53, index)             # loop continuously; sampleID comes last
        phdr += _name(f"p{program}") + struct.pack("<HHHIII", program, 0, index, 0, 0, 0)
        pbag += struct.pack("<HH", index, 0)
        pgen += struct.pack("<HH", 41, index)                      # preset zone -> instrument
    n = len(presets)
    shdr += _name("EOS") + bytes(26)
    inst += _name("EOI") + struct.pack("<H", n)
    ibag += struct.pack("<HH", 2 * n, 0)
    igen += bytes(4)
    phdr += _name("EOP") + struct.pack("<HHHIII", 0, 0, n, 0, 0, 0)
    pbag += struct.pack("<HH", n, 0)
    pgen += bytes(4)

    def riff_list(kind: bytes, *chunks: bytes) -> bytes:
        return _chunk(b"LIST", kind + b"".join(chunks))

    body = (b"sfbk"
            + riff_list(b"INFO", _chunk(b"ifil", struct.pack("<HH", 2, 1)), _chunk(b"isng", b"EMU8000\0"),
                        _chunk(b"INAM", b"notono test\0"))
            + riff_list(b"sdta", _chunk(b"smpl", smpl))
            + riff_list(b"pdta", _chunk(b"phdr", phdr), _chunk(b"pbag", pbag), _chunk(b"pmod", bytes(10)),
                        _chunk(b"pgen", pgen), _chunk(b"inst", inst), _chunk(b"ibag", ibag),
                        _chunk(b"imod", bytes(10)), _chunk(b"igen", igen), _chunk(b"shdr", shdr)))
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.fixture(scope="module")
def sine_soundfont(tmp_path_factory) -> Path:
    """Program 0 (a keyboard program): a 440 Hz sine; program 1: silence; program 2: missing."""
    t = np.arange(4400) / 44_000
    path = tmp_path_factory.mktemp("sf") / "sine.sf2"
    path.write_bytes(tiny_soundfont({0: 0.5 * np.sin(2 * np.pi * 440 * t), 1: np.zeros(4400)}))
    return path


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


QUICK = RenderSettings(pitches=(36, 60), families=("bass", "keyboard", "vocal"), programs_per_family=1)


# --- the corpus the builder writes ------------------------------------------------------------

def test_builder_writes_nsynth_layout(small_corpus, small_corpus_settings):
    examples = json.loads((small_corpus / "examples.json").read_text())
    expected = len(FAMILIES) * small_corpus_settings.programs_per_family * len(small_corpus_settings.pitches)
    assert len(examples) == expected
    for name, entry in examples.items():
        assert set(entry) == NSYNTH_FIELDS
        assert entry["note_str"] == name
        assert name == f"{entry['instrument_str']}-{entry['pitch']:03d}-{entry['velocity']:03d}"
        assert FAMILIES[entry["instrument_family"]] == entry["instrument_family_str"]
        assert entry["sample_rate"] == SAMPLE_RATE and entry["instrument_source_str"] == "synthetic"
    assert len({e["note"] for e in examples.values()}) == len(examples)
    info = sf.info(str(small_corpus / "audio" / f"{next(iter(examples))}.wav"))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (SAMPLE_RATE, 1, NUM_SAMPLES, "PCM_16")


def test_builder_levels_keep_velocity_and_avoid_clipping(tmp_path):
    settings = RenderSettings(pitches=(48, 60), velocities=(40, 120), families=("keyboard",), programs_per_family=1)
    render_corpus(None, tmp_path / "c", settings, progress=False)
    peaks = {p.stem: np.abs(load_audio(p)).max() for p in (tmp_path / "c" / "audio").glob("*.wav")}
    assert max(peaks.values()) == pytest.approx(10 ** (-1 / 20), abs=1e-3)          # -1 dBFS, not clipped
    assert peaks["keyboard_synthetic_000-060-040"] < 0.7 * peaks["keyboard_synthetic_000-060-120"]


def test_reader_reads_builder_corpus(small_corpus, small_corpus_settings):
    records = read_examples(small_corpus)
    assert len(records) == (len(FAMILIES) * small_corpus_settings.programs_per_family
                            * len(small_corpus_settings.pitches))
    assert [r.note for r in records] == sorted(r.note for r in records)
    assert {r.family for r in records} == set(FAMILIES)
    first = records[0]
    assert first.path.is_file() and first.source == "synthetic"
    assert first.family_index == FAMILIES.index(first.family)
    only = read_examples(small_corpus, pitch_range=(40, 70), families=["bass", "vocal"])
    assert only and {r.family for r in only} == {"bass", "vocal"}
    assert all(40 <= r.pitch <= 70 for r in only)
    with pytest.raises(ValueError, match="unknown instrument families"):
        read_examples(small_corpus, families=["kazoo"])


def test_split_is_deterministic_and_disjoint(small_corpus):
    records = read_examples(small_corpus)
    train, valid = split_notes(records, seed=0)
    train_again, valid_again = split_notes(list(reversed(records)), seed=0)
    assert [r.note for r in train] == [r.note for r in train_again]
    assert [r.note for r in valid] == [r.note for r in valid_again]
    names_train, names_valid = {r.note for r in train}, {r.note for r in valid}
    assert not names_train & names_valid
    assert names_train | names_valid == {r.note for r in records}
    assert len(train) == round(0.8 * len(records))
    other_train, _ = split_notes(records, seed=1)
    assert {r.note for r in other_train} != names_train


def test_label_encoders():
    assert pitch_to_index(24) == 0 and pitch_to_index(84) == 60 and index_to_pitch(60) == 84
    assert all(index_to_family(family_to_index(f)) == f for f in FAMILIES)
    for bad_call, message in ((lambda: pitch_to_index(23), "23"), (lambda: index_to_pitch(61), "61"),
                              (lambda: family_to_index("kazoo"), "kazoo"), (lambda: index_to_family(11), "11")):
        with pytest.raises(ValueError, match=message):
            bad_call()


def test_dataset_items_and_cache(small_corpus, tmp_path):
    dataset = NSynthDataset(small_corpus, split="valid", cache_dir=tmp_path / "cache", return_audio=True)
    train = NSynthDataset(small_corpus, split="train", representation=dataset.representation)
    assert len(dataset) + len(train) == len(read_examples(small_corpus))
    assert not {r.note for r in dataset.records} & {r.note for r in train.records}
    item = dataset[0]
    record = dataset.records[0]
    assert item["image"].shape == (2, 1024, 128) and item["image"].dtype == torch.float32
    assert item["audio"].shape == (NUM_SAMPLES,)
    assert item["pitch"] == record.pitch and item["pitch_index"] == record.pitch - 24
    assert item["family_index"] == record.family_index and item["note"] == record.note
    cached = list((tmp_path / "cache").rglob(f"{record.note}.*.npy"))
    assert len(cached) == 1 and np.load(cached[0]).dtype == np.float16
    # a second dataset reads the cache: same image to float16 precision, floor kept at the threshold
    again = NSynthDataset(small_corpus, split="valid", cache_dir=tmp_path / "cache")[0]["image"]
    torch.testing.assert_close(again, item["image"], atol=1e-2, rtol=1e-3)
    assert again[0].min() >= PHASE_THRESHOLD_LOG_POWER
    # the cache is keyed by the representation's settings
    other = NSynthDataset(small_corpus, split="valid", representation=MelIF(700.0), cache_dir=tmp_path / "cache")
    assert other.fill_cache(batch_size=8, progress=False) == len(other)
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir()]) == 2
    assert other.fill_cache(progress=False) == 0


def test_builder_is_deterministic_and_resumes(tmp_path):
    first = render_corpus(None, tmp_path / "a", QUICK, progress=False)
    render_corpus(None, tmp_path / "b", QUICK, progress=False)
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    assert first.notes_written == 6
    # resume: a lost WAV and a lost examples.json come back byte-identical; the rest is kept
    reference = _tree_digest(tmp_path / "a")
    (tmp_path / "a" / "audio" / "vocal_synthetic_000-060-100.wav").unlink()
    (tmp_path / "a" / "examples.json").unlink()
    resumed = render_corpus(None, tmp_path / "a", QUICK, progress=False)
    assert (resumed.notes_written, resumed.notes_kept) == (1, 5)
    assert _tree_digest(tmp_path / "a") == reference


def test_builder_refuses_a_folder_holding_another_corpus(tmp_path):
    render_corpus(None, tmp_path / "c", QUICK, progress=False)
    before = _tree_digest(tmp_path / "c")
    with pytest.raises(ValueError, match="different corpus"):
        render_corpus(None, tmp_path / "c", RenderSettings(pitches=(36, 61), families=QUICK.families,
                                                           programs_per_family=1), progress=False)
    assert _tree_digest(tmp_path / "c") == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=MANIFEST_NAME):
        render_corpus(None, tmp_path / "other", QUICK, progress=False)
    assert [p.name for p in (tmp_path / "other").iterdir()] == ["notes.txt"]


def test_builder_rejects_missing_and_invalid_soundfonts(tmp_path):
    missing = tmp_path / "nowhere.sf2"
    with pytest.raises(FileNotFoundError, match="nowhere.sf2"):
        render_corpus([missing], tmp_path / "out", QUICK, progress=False)
    text = tmp_path / "notes.sf2"
    text.write_text("this is not a SoundFont")
    with pytest.raises(ValueError, match="notes.sf2.*not a SoundFont"):
        render_corpus([text], tmp_path / "out", QUICK, progress=False)
    truncated = tmp_path / "truncated.sf2"
    truncated.write_bytes(default_soundfont().read_bytes()[:5000])
    with pytest.raises(ValueError, match="truncated.sf2"):
        render_corpus([truncated], tmp_path / "out", QUICK, progress=False)
    assert not (tmp_path / "out").exists()                  # nothing half-written


def test_builder_skips_and_reports_missing_and_silent_presets(sine_soundfont, tmp_path):
    settings = RenderSettings(pitches=(57, 69), families=("keyboard",), programs_per_family=3)
    result = render_corpus([sine_soundfont], tmp_path / "c", settings, progress=False)
    reasons = {s.program: s.reason for s in result.skipped_presets}
    assert set(reasons) == {1, 2}
    assert "silence" in reasons[1] and "missing" in reasons[2]
    assert "renders silence" in result.summary() and "missing" in result.summary()
    records = read_examples(tmp_path / "c")
    assert [r.note for r in records] == ["keyboard_synthetic_000-057-100", "keyboard_synthetic_000-069-100"]


def test_several_soundfonts_give_more_instruments(sine_soundfont, tmp_path):
    settings = RenderSettings(pitches=(60,), families=("keyboard",), programs_per_family=1)
    result = render_corpus([default_soundfont(), sine_soundfont], tmp_path / "c", settings, progress=False)
    assert result.instruments["keyboard"] == 2
    assert {r.instrument_str for r in read_examples(tmp_path / "c")} == {"keyboard_synthetic_000",
                                                                          "keyboard_synthetic_001"}


# --- bad corpora and bad audio ----------------------------------------------------------------

def _copy_corpus(small_corpus: Path, destination: Path, notes: int = 3) -> Path:
    examples = json.loads((small_corpus / "examples.json").read_text())
    keep = dict(list(sorted(examples.items()))[:notes])
    (destination / "audio").mkdir(parents=True)
    for name in keep:
        shutil.copy(small_corpus / "audio" / f"{name}.wav", destination / "audio" / f"{name}.wav")
    (destination / "examples.json").write_text(json.dumps(keep))
    return destination


def test_reader_names_a_missing_wav(small_corpus, tmp_path):
    corpus = _copy_corpus(small_corpus, tmp_path / "c")
    victim = sorted((corpus / "audio").iterdir())[1]
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=victim.stem):
        read_examples(corpus)


def test_reader_rejects_broken_examples(small_corpus, tmp_path):
    with pytest.raises(FileNotFoundError, match="examples.json"):
        read_examples(tmp_path)
    corpus = _copy_corpus(small_corpus, tmp_path / "c")
    (corpus / "examples.json").write_text("{not json")
    with pytest.raises(ValueError, match="examples.json.*not valid JSON"):
        read_examples(corpus)
    (corpus / "examples.json").write_text(json.dumps({"bass_x-036-100": {"velocity": 100}}))
    with pytest.raises(ValueError, match="bass_x-036-100.*pitch"):
        read_examples(corpus)


def test_wav_of_another_rate_is_resampled_with_a_warning(rendered_wav, tmp_path):
    import soxr

    original = load_audio(rendered_wav)
    resampled_file = tmp_path / "at44k.wav"
    stereo = np.stack([original, original], axis=1)
    sf.write(str(resampled_file), soxr.resample(stereo, SAMPLE_RATE, 44_100), 44_100, subtype="FLOAT")
    with pytest.warns(ResampledAudioWarning, match="at44k.wav.*44100"):
        restored = load_audio(resampled_file)
    assert restored.shape == (NUM_SAMPLES,) and restored.dtype == np.float32
    error = np.sum((restored - original) ** 2) / np.sum(original ** 2)
    assert error < 1e-3                                 # same note, stereo mixed down to mono


def test_load_audio_errors_and_length(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.wav"):
        load_audio(tmp_path / "absent.wav")
    (tmp_path / "fake.wav").write_text("not audio")
    with pytest.raises(ValueError, match="fake.wav"):
        load_audio(tmp_path / "fake.wav")
    write_wav_atomic(tmp_path / "short.wav", np.full(1000, 0.25, dtype=np.float32))
    short = load_audio(tmp_path / "short.wav")
    assert short.shape == (NUM_SAMPLES,) and short[999] == pytest.approx(0.25, abs=1e-4) and short[1000] == 0


def test_long_file_loads_4_seconds_reading_only_what_it_needs(rendered_wav, tmp_path):
    import tracemalloc

    import soxr

    original = load_audio(rendered_wav)
    tiled = np.tile(original, 15)                                   # 60 s of real notes
    write_wav_atomic(tmp_path / "long.wav", tiled, subtype="FLOAT")
    loaded = load_audio(tmp_path / "long.wav")
    assert loaded.shape == (NUM_SAMPLES,) and np.array_equal(loaded, original)

    # 60 s stereo at 44.1 kHz (21 MB as float32): same note as resampling the whole file, and
    # only about 4 s of it is ever held in memory
    at44k = soxr.resample(tiled, SAMPLE_RATE, 44_100).astype(np.float32)
    sf.write(str(tmp_path / "long44k.wav"), np.stack([at44k, at44k], axis=1), 44_100, subtype="FLOAT")
    tracemalloc.start()
    try:
        with pytest.warns(ResampledAudioWarning, match="long44k.wav"):
            loaded = load_audio(tmp_path / "long44k.wav")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert loaded.shape == (NUM_SAMPLES,)
    assert peak < 8_000_000, f"load_audio held {peak / 1e6:.1f} MB for a 4 s note"
    whole = soxr.resample(at44k, 44_100, SAMPLE_RATE, quality="HQ")[:NUM_SAMPLES]
    assert np.max(np.abs(loaded - whole)) < 1e-4                    # the cut-off tail does not reach the note


def test_write_wav_atomic_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(Exception):
        write_wav_atomic(tmp_path / "bad.wav", np.zeros(100), subtype="NOT_A_SUBTYPE")
    assert list(tmp_path.iterdir()) == []
    path = write_wav_atomic(tmp_path / "ok.wav", np.zeros(100, dtype=np.float32))
    assert [p.name for p in tmp_path.iterdir()] == ["ok.wav"] and sf.info(str(path)).frames == 100


# --- the CLI and the round trip ---------------------------------------------------------------

def test_cli_render_and_errors(tmp_path, capsys):
    code = cli_main(["data", "render", "--out", str(tmp_path / "c"), "--pitches", "36,60",
                     "--families", "bass", "--programs-per-family", "1", "--no-progress"])
    assert code == 0
    assert "bass" in capsys.readouterr().out
    assert len(read_examples(tmp_path / "c")) == 2
    code = cli_main(["data", "render", "--soundfont", str(tmp_path / "missing.sf2"), "--out", str(tmp_path / "d")])
    assert code == 1
    assert "missing.sf2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["data", "render", "--out", str(tmp_path / "e"), "--pitches", "20-130"])


def test_roundtrip_figures_and_pitch(small_corpus, capsys):
    from notono_live.data.roundtrip import run_roundtrip
    from notono_live.evaluation.pitch import pitch_within_cents

    result = run_roundtrip(small_corpus, n=11, progress=False)
    assert result.notes == 11 and set(result.families) == set(FAMILIES)
    assert result.linear_snr_db_min >= 40.0
    assert 0.0 < result.mel_spectral_convergence < 0.3
    assert result.pitch_checked >= 6 and result.pitch_kept_fraction >= 0.8
    keyboard = load_audio(small_corpus / "audio" / "keyboard_synthetic_000-060-100.wav")
    assert pitch_within_cents(keyboard, SAMPLE_RATE, 60)
    assert not pitch_within_cents(keyboard, SAMPLE_RATE, 61)          # 100 cents off
    assert not pitch_within_cents(keyboard, SAMPLE_RATE, 48)          # an octave off
