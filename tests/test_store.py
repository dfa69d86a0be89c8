"""The session store: immutable versions, atomic files, undo/redo, and restore after a restart."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from notono_live.codemaps import Codemaps
from notono_live.engine import render
from notono_live.engine import store as store_module
from notono_live.engine.store import SoundStore, VersionRecord, atomic_write_bytes, is_temporary


def _maps(seed: int) -> Codemaps:
    rng = np.random.default_rng(seed)
    return Codemaps(rng.integers(0, 512, (32, 4)), rng.integers(0, 512, (64, 8)))


def _tone(pitch: int, sr: int = 44_100) -> np.ndarray:
    t = np.arange(4 * sr) / sr
    return (0.4 * np.sin(2 * np.pi * 440 * 2 ** ((pitch - 69) / 12) * t)).astype(np.float32)


def _commit(store: SoundStore, out, sound: int, parent: int, seed: int, operation: str = "generate") -> VersionRecord:
    version = store.next_version(sound)
    record = VersionRecord(sound=sound, version=version, parent=parent, operation=operation, pitch=60,
                           family="organ", wav="", png="", sample_rate=44_100,
                           label=render.clip_label("organ", 60, sound, version), codemaps=_maps(seed),
                           params={"seed": seed})
    return store.commit(record, _tone(60), b"\x89PNG fake", out, f"{sound:04d}-organ-C3-v{version:03d}")


def test_versions_are_files_on_disk_and_survive_a_restart(tmp_path):
    out = tmp_path / "samples"
    store = SoundStore(tmp_path / "session")
    sound = store.reserve_sound()
    v1 = _commit(store, out, sound, 0, 1)
    v2 = _commit(store, out, sound, 1, 2, "inpaint")
    v3 = _commit(store, out, sound, 2, 3, "inpaint")
    assert (v1.version, v2.version, v3.version) == (1, 2, 3)
    info = sf.info(v3.wav)
    assert (info.samplerate, info.subtype, info.frames) == (44_100, "PCM_24", 4 * 44_100)
    assert store.undo(sound).version == 2
    restored = SoundStore(tmp_path / "session")
    history = restored.history(sound)
    assert sorted(history.versions) == [1, 2, 3]
    assert history.current == 2 and history.redo == [3]
    assert history.versions[3].codemaps == _maps(3)
    assert history.versions[3].parent == 2 and history.versions[3].wav == v3.wav
    assert restored.redo(sound).version == 3


def test_undo_redo_and_branching(tmp_path):
    store = SoundStore(tmp_path / "s")
    sound = store.reserve_sound()
    _commit(store, tmp_path / "o", sound, 0, 1)
    _commit(store, tmp_path / "o", sound, 1, 2)
    with pytest.raises(LookupError, match="nothing to redo"):
        store.redo(sound)
    assert store.undo(sound).version == 1
    with pytest.raises(LookupError, match="nothing to undo"):
        store.undo(sound)
    # an edit after undo branches from version 1 and clears redo; version 2 stays on disk and in history
    branch = _commit(store, tmp_path / "o", sound, 1, 3)
    assert branch.version == 3 and branch.parent == 1
    with pytest.raises(LookupError):
        store.redo(sound)
    assert store.checkout(sound, 2).version == 2
    assert store.undo(sound).version == 1
    with pytest.raises(KeyError, match="unknown sound 99"):
        store.get(99)
    with pytest.raises(KeyError, match="no version 7"):
        store.get(sound, 7)


def test_rendered_files_are_never_overwritten(tmp_path):
    out = tmp_path / "shared"
    out.mkdir()
    # another session already wrote a file with the name this one would choose
    (out / "0001-organ-C3-v001.wav").write_bytes(b"someone else's clip")
    store = SoundStore(tmp_path / "s")
    record = _commit(store, out, store.reserve_sound(), 0, 1)
    assert record.wav.endswith("0001-organ-C3-v001-2.wav")
    assert (out / "0001-organ-C3-v001.wav").read_bytes() == b"someone else's clip"
    with pytest.raises(FileExistsError):
        atomic_write_bytes(out / "0001-organ-C3-v001.wav", b"x")


def test_a_name_taken_while_writing_is_kept_and_the_new_file_moves_on(tmp_path, monkeypatch):
    """Another writer creates the chosen name between the free-name check and the write: its file
    stays as it was and this version takes the next name."""
    out = tmp_path / "o"
    store = SoundStore(tmp_path / "s")
    free_path = store_module._free_path
    raced: list[Path] = []

    def racing_free_path(folder, stem, suffix):
        path = free_path(folder, stem, suffix)
        if not raced:
            path.write_bytes(b"the other writer's clip")   # lands after the check, before the write
            raced.append(path)
        return path

    monkeypatch.setattr(store_module, "_free_path", racing_free_path)
    record = _commit(store, out, store.reserve_sound(), 0, 1)
    assert (out / "0001-organ-C3-v001.wav").read_bytes() == b"the other writer's clip"
    assert record.wav != str(out / "0001-organ-C3-v001.wav")
    assert sf.info(record.wav).frames == 4 * 44_100


def test_a_version_number_cannot_be_claimed_twice(tmp_path):
    store = SoundStore(tmp_path / "s")
    sound = store.reserve_sound()
    _commit(store, tmp_path / "o", sound, 0, 1)
    stale = VersionRecord(sound=sound, version=1, parent=0, operation="x", pitch=60, family="organ", wav="", png="",
                          sample_rate=44_100, label="", codemaps=_maps(0))
    with pytest.raises(RuntimeError, match="already taken"):
        store.commit(stale, _tone(60), b"", tmp_path / "o", "dup")


def test_leftovers_of_a_killed_writer_are_cleaned_and_bad_files_skipped(tmp_path):
    out = tmp_path / "o"
    store = SoundStore(tmp_path / "s")
    sound = store.reserve_sound()
    good = _commit(store, out, sound, 0, 1)
    sound_dir = tmp_path / "s" / "sounds" / f"{sound:04d}"
    (out / ".0001-organ-C3-v002.wav.k2x9_q1a.tmp").write_bytes(b"half a wav")   # as fileio names them
    (sound_dir / ".v0002.json.zz81ab3c.tmp").write_text("{")
    (out / ".another-program.wav.ab12cd34.tmp").write_bytes(b"not ours")   # a shared Samples folder
    (sound_dir / "v0003.json").write_text("{ not json")
    restored = SoundStore(tmp_path / "s")
    assert sorted(restored.history(sound).versions) == [1]
    assert any("v0003.json" in s for s in restored.skipped)
    assert not [p for p in out.iterdir() if is_temporary(p.name)]
    assert not [p for p in sound_dir.iterdir() if is_temporary(p.name)]
    assert (out / ".another-program.wav.ab12cd34.tmp").read_bytes() == b"not ours"
    assert sf.info(good.wav).frames == 4 * 44_100
    # a new sound never reuses an id whose folder exists
    assert restored.reserve_sound() == sound + 1


def test_version_committed_after_the_last_state_save_becomes_current(tmp_path):
    store = SoundStore(tmp_path / "s")
    sound = store.reserve_sound()
    _commit(store, tmp_path / "o", sound, 0, 1)
    _commit(store, tmp_path / "o", sound, 1, 2)
    state = tmp_path / "s" / "sounds" / f"{sound:04d}" / "state.json"
    doc = json.loads(state.read_text())
    doc.update(current=1, known=1)   # as if killed between the version JSON and the state file
    state.write_text(json.dumps(doc))
    assert SoundStore(tmp_path / "s").history(sound).current == 2


def test_other_format_is_refused(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "session.json").write_text(json.dumps({"format": "notono-session", "version": 99}))
    with pytest.raises(ValueError, match="format version 1"):
        SoundStore(tmp_path / "s")


def test_render_helpers():
    assert render.note_name(60) == "C3" and render.note_name(61) == "C#3" and render.note_name(24) == "C0"
    assert render.clip_label("organ", 60, 2, 4) == "organ C3 #2 v4"
    tone = _tone(60, 16_000)
    out = render.resample_for_output(tone, 44_100)
    assert out.dtype == np.float32 and len(out) == 4 * 44_100
    png = render.spectrogram_png(tone)
    assert png.startswith(b"\x89PNG")
    # erase lowers the level inside the region only: a 261.6 Hz tone sits in the lowest top rows
    quiet = render.attenuate_region(tone, (32, 4), 0, 0, 8, 2, 40.0)
    inside = np.abs(quiet[4000:28000]).max()
    outside = np.abs(quiet[40000:] - tone[40000:]).max()
    assert inside < 0.4 * 0.05 and outside < 1e-3
    untouched = render.attenuate_region(tone, (32, 4), 16, 0, 16, 4, 40.0)   # rows far above the tone
    assert np.abs(untouched - tone)[2000:-2000].max() < 0.01   # the abrupt ends are broadband clicks


def test_a_render_is_found_by_path_by_a_copy_and_after_a_restart(tmp_path):
    out = tmp_path / "samples"
    store = SoundStore(tmp_path / "session")
    sound = store.reserve_sound()
    records = []
    for version, pitch in ((1, 60), (2, 64)):
        record = VersionRecord(sound=sound, version=version, parent=version - 1, operation="generate", pitch=pitch,
                               family="organ", wav="", png="", sample_rate=44_100, label="x", codemaps=_maps(version))
        records.append(store.commit(record, _tone(pitch), b"\x89PNG", out, f"{sound:04d}-v{version}"))
    assert all(len(r.wav_sha256) == 64 for r in records)
    assert store.find_file(records[0].wav).version == 1
    copy = tmp_path / "project" / "Samples" / "Imported" / "organ.wav"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(Path(records[1].wav).read_bytes())
    assert store.find_file(copy).version == 2
    foreign = tmp_path / "foreign.wav"
    sf.write(foreign, _tone(67), 44_100, subtype="PCM_24")
    with pytest.raises(LookupError, match="not a render"):
        store.find_file(foreign)
    with pytest.raises(FileNotFoundError):
        store.find_file(tmp_path / "missing.wav")
    with pytest.raises(FileNotFoundError):
        store.find_file(tmp_path)   # a folder is no file

    # a version written before digests were recorded is hashed from its file when first needed
    version_file = tmp_path / "session" / "sounds" / f"{sound:04d}" / "v0002.json"
    doc = json.loads(version_file.read_text())
    del doc["wav_sha256"]
    version_file.write_text(json.dumps(doc))
    restored = SoundStore(tmp_path / "session")
    assert restored.get(sound, 2).wav_sha256 == ""
    assert restored.skipped == []
    assert restored.find_file(copy).version == 2
    assert restored.find_file(records[0].wav).version == 1


def test_a_file_too_large_to_be_a_render_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "MAX_FIND_BYTES", 1000)
    big = tmp_path / "long.wav"
    big.write_bytes(b"\0" * 2000)
    with pytest.raises(LookupError, match="larger than any render"):
        SoundStore(tmp_path / "session").find_file(big)


def test_a_record_from_a_later_format_revision_still_loads(tmp_path):
    store = SoundStore(tmp_path / "session")
    sound = store.reserve_sound()
    record = _commit(store, tmp_path / "samples", sound, 0, 1)
    version_file = tmp_path / "session" / "sounds" / f"{sound:04d}" / "v0001.json"
    doc = json.loads(version_file.read_text())
    doc["added_later"] = {"anything": 1}
    version_file.write_text(json.dumps(doc))
    restored = SoundStore(tmp_path / "session")
    assert restored.skipped == [] and restored.get(sound, 1).wav == record.wav
