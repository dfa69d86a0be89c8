"""NSynth-layout data: the reader, the 80/20 split, label encoders and the torch Dataset.

A corpus is a folder with ``examples.json`` (note name -> NSynth's fields) and ``audio/<note>.wav``.
The real NSynth (any of its train/valid/test folders) reads unchanged, and so does a corpus from
`notono-live data render`. As in NOTONO the notes are filtered to pitches 24–84 and
the 11 families, and split 80/20 at random with a fixed seed over notes rather than instruments.

WAVs at another sample rate are resampled on reading with a warning naming the file (see
`audio_io.load_audio`): NSynth is 16 kHz throughout, so this only happens with user-made corpora.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..audio_io import load_audio
from ..fileio import atomic_write_bytes
from ..constants import DEFAULT_SPLIT_SEED, FAMILIES, PITCH_MAX, PITCH_MIN, TRAIN_FRACTION, check_pitch, family_index

__all__ = [
    "NoteRecord",
    "read_examples",
    "split_notes",
    "pitch_to_index",
    "index_to_pitch",
    "family_to_index",
    "index_to_family",
    "NSynthDataset",
]

REQUIRED_FIELDS = ("pitch", "velocity")


# --- label encoders ---------------------------------------------------------------------------

def pitch_to_index(pitch: int) -> int:
    """MIDI pitch 24–84 -> class 0–60."""
    return check_pitch(pitch) - PITCH_MIN


def index_to_pitch(index: int) -> int:
    """Class 0–60 -> MIDI pitch 24–84."""
    if not 0 <= int(index) <= PITCH_MAX - PITCH_MIN:
        raise ValueError(f"pitch index {index} is outside 0-{PITCH_MAX - PITCH_MIN}")
    return int(index) + PITCH_MIN


def family_to_index(family: str) -> int:
    """NSynth family name -> index in NSynth's order."""
    return family_index(family)


def index_to_family(index: int) -> str:
    """Index in NSynth's order -> family name."""
    if not 0 <= int(index) < len(FAMILIES):
        raise ValueError(f"family index {index} is outside 0-{len(FAMILIES) - 1}")
    return FAMILIES[int(index)]


# --- reader -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class NoteRecord:
    """One note of an NSynth-layout corpus.

    Args:
        note: note name, the key in examples.json and the WAV's stem.
        pitch: MIDI pitch.
        velocity: MIDI velocity.
        family: NSynth family name.
        family_index: its index in NSynth's order.
        instrument_str: instrument name (e.g. ``bass_synthetic_003``).
        source: ``acoustic``, ``electronic`` or ``synthetic``.
        path: the WAV file.
    """

    note: str
    pitch: int
    velocity: int
    family: str
    family_index: int
    instrument_str: str
    source: str
    path: Path


def _record_family(note: str, entry: dict, examples_path: Path) -> str:
    if "instrument_family_str" in entry:
        family = entry["instrument_family_str"]
        if family not in FAMILIES:
            raise ValueError(f"{examples_path}: note {note!r} has unknown instrument_family_str {family!r}")
        return family
    if "instrument_family" in entry:
        try:
            return index_to_family(entry["instrument_family"])
        except (ValueError, TypeError):
            raise ValueError(f"{examples_path}: note {note!r} has invalid instrument_family "
                             f"{entry['instrument_family']!r}") from None
    raise ValueError(f"{examples_path}: note {note!r} lacks 'instrument_family_str' and 'instrument_family'")


def read_examples(root: str | os.PathLike, pitch_range: tuple[int, int] = (PITCH_MIN, PITCH_MAX),
                  families: Sequence[str] | None = None) -> list[NoteRecord]:
    """Read an NSynth-layout folder and return its notes, filtered and sorted by note name.

    Args:
        root: folder holding ``examples.json`` and ``audio/``.
        pitch_range: inclusive MIDI range to keep (default 24–84).
        families: family names to keep (default all 11).

    Raises:
        FileNotFoundError: no such folder, no examples.json, or a kept note's WAV is missing
            (the message names the note and the file).
        ValueError: examples.json is not valid JSON or an entry lacks a field.
    """
    root = Path(root)
    examples_path = root / "examples.json"
    if not root.is_dir():
        raise FileNotFoundError(f"corpus folder not found: {root}")
    if not examples_path.is_file():
        raise FileNotFoundError(f"no examples.json in {root}: not an NSynth-layout corpus "
                                f"(render one with `notono-live data render`)")
    try:
        examples = json.loads(examples_path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{examples_path} is not valid JSON: {error}") from None
    if not isinstance(examples, dict):
        raise ValueError(f"{examples_path} must map note names to entries, got a {type(examples).__name__}")
    keep_families = set(FAMILIES if families is None else families)
    unknown = keep_families - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown instrument families {sorted(unknown)}; expected names from {', '.join(FAMILIES)}")
    low, high = pitch_range
    records = []
    for note in sorted(examples):
        entry = examples[note]
        if not isinstance(entry, dict):
            raise ValueError(f"{examples_path}: entry for note {note!r} is not an object")
        missing = [key for key in REQUIRED_FIELDS if key not in entry]
        if missing:
            raise ValueError(f"{examples_path}: note {note!r} lacks field(s) {', '.join(missing)}")
        try:
            pitch, velocity = int(entry["pitch"]), int(entry["velocity"])
        except (TypeError, ValueError):
            raise ValueError(f"{examples_path}: note {note!r} has a non-integer pitch or velocity") from None
        family = _record_family(note, entry, examples_path)
        if not (low <= pitch <= high) or family not in keep_families:
            continue
        path = root / "audio" / f"{note}.wav"
        if not path.is_file():
            raise FileNotFoundError(f"{examples_path} names note {note!r} but its audio file {path} is missing")
        records.append(NoteRecord(
            note=note, pitch=pitch, velocity=velocity, family=family, family_index=FAMILIES.index(family),
            instrument_str=str(entry.get("instrument_str", "")),
            source=str(entry.get("instrument_source_str", "")), path=path))
    return records


def split_notes(records: Sequence[NoteRecord], seed: int = DEFAULT_SPLIT_SEED,
                train_fraction: float = TRAIN_FRACTION) -> tuple[list[NoteRecord], list[NoteRecord]]:
    """Deterministic, disjoint random split over notes: (train, valid), each sorted by note name.

    Notes are sorted by name, permuted with a seeded generator, and the first
    round(train_fraction × n) go to train. The same notes and seed give the same split anywhere.
    """
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must lie strictly between 0 and 1, got {train_fraction}")
    ordered = sorted(records, key=lambda r: r.note)
    names = [r.note for r in ordered]
    if len(set(names)) != len(names):
        raise ValueError("note names repeat; a split over notes needs unique names")
    order = np.random.default_rng(seed).permutation(len(ordered))
    cut = int(round(train_fraction * len(ordered)))
    train = sorted((ordered[i] for i in order[:cut]), key=lambda r: r.note)
    valid = sorted((ordered[i] for i in order[cut:]), key=lambda r: r.note)
    return train, valid


# --- Dataset ----------------------------------------------------------------------------------

class NSynthDataset(Dataset):
    """Torch Dataset of Mel-IF images and labels from an NSynth-layout corpus.

    Items are dicts ``{"image": float32 [2, 1024, 128] (unnormalised), "pitch": int MIDI,
    "pitch_index": int, "family_index": int, "note": str}``, plus ``"audio"`` (float32 [64000])
    when ``return_audio`` is set. With ``cache_dir`` each note's image is stored once as float16
    ``.npy`` under a folder keyed by the representation's settings; the file name also carries the
    WAV's size and modification time, so a re-rendered WAV is recomputed.

    Args:
        root: corpus folder (examples.json + audio/).
        split: ``"train"``, ``"valid"`` or ``"all"``.
        seed: split seed (default 0).
        representation: transform with ``forward`` and ``settings()``; default ``MelIF()``.
        cache_dir: folder for cached images, or None to compute on every access.
        pitch_range: inclusive MIDI range kept (default 24–84).
        families: family names kept (default all 11).
        train_fraction: share of notes in the train split (default 0.8).
        return_audio: also return the waveform.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", seed: int = DEFAULT_SPLIT_SEED,
                 representation=None, cache_dir: str | os.PathLike | None = None,
                 pitch_range: tuple[int, int] = (PITCH_MIN, PITCH_MAX), families: Sequence[str] | None = None,
                 train_fraction: float = TRAIN_FRACTION, return_audio: bool = False) -> None:
        if split not in ("train", "valid", "all"):
            raise ValueError(f"split must be 'train', 'valid' or 'all', got {split!r}")
        if representation is None:
            from ..representation import MelIF
            representation = MelIF()
        self.root = Path(root)
        self.split = split
        self.representation = representation
        self.return_audio = return_audio
        records = read_examples(self.root, pitch_range=pitch_range, families=families)
        if split == "all":
            self.records = records
        else:
            train, valid = split_notes(records, seed=seed, train_fraction=train_fraction)
            self.records = train if split == "train" else valid
        self.cache_dir = None
        if cache_dir is not None:
            self.cache_dir = Path(cache_dir) / _settings_key(representation)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            settings_file = self.cache_dir / "settings.json"
            if not settings_file.exists():
                settings_file.write_text(json.dumps(_settings(representation), indent=1, sort_keys=True) + "\n")

    def __len__(self) -> int:
        return len(self.records)

    def _cache_path(self, record: NoteRecord) -> Path:
        stat = record.path.stat()
        return self.cache_dir / f"{record.note}.{stat.st_size:x}-{stat.st_mtime_ns:x}.npy"

    def image(self, index: int, audio: np.ndarray | None = None) -> torch.Tensor:
        """The unnormalised image of note ``index``, from the cache when there is one."""
        record = self.records[index]
        cache_path = self._cache_path(record) if self.cache_dir is not None else None
        if cache_path is not None and cache_path.is_file():
            try:
                image = torch.from_numpy(np.load(cache_path).astype(np.float32))
            except (OSError, ValueError):
                image = None  # a damaged cache file is recomputed below
            if image is not None:
                threshold = getattr(self.representation, "phase_threshold", None)
                if threshold is not None:
                    # float16 rounds the clamped floor slightly below the threshold; put it back.
                    image[0].clamp_(min=threshold)
                return image
        if audio is None:
            audio = load_audio(record.path)
        image = self.representation.forward(torch.from_numpy(audio).unsqueeze(0))[0].cpu()
        if cache_path is not None:
            _save_npy_atomic(cache_path, image.numpy().astype(np.float16))
        return image

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        audio = load_audio(record.path) if self.return_audio else None
        item = {
            "image": self.image(index, audio),
            "pitch": record.pitch,
            "pitch_index": record.pitch - PITCH_MIN,
            "family_index": record.family_index,
            "note": record.note,
        }
        if audio is not None:
            item["audio"] = torch.from_numpy(audio)
        return item

    def fill_cache(self, batch_size: int = 16, progress: bool = True) -> int:
        """Compute every missing cached image in batches; returns how many were computed."""
        if self.cache_dir is None:
            raise ValueError("this dataset has no cache_dir to fill")
        from tqdm import tqdm

        missing = [i for i in range(len(self)) if not self._cache_path(self.records[i]).is_file()]
        for start in tqdm(range(0, len(missing), batch_size), desc="caching spectrograms",
                          disable=not progress, unit="batch"):
            chunk = missing[start:start + batch_size]
            audio = torch.from_numpy(np.stack([load_audio(self.records[i].path) for i in chunk]))
            images = self.representation.forward(audio).cpu().numpy().astype(np.float16)
            for i, image in zip(chunk, images):
                _save_npy_atomic(self._cache_path(self.records[i]), image)
        return len(missing)


def _settings(representation) -> dict:
    if hasattr(representation, "settings"):
        return dict(representation.settings())
    return {"repr": repr(representation)}


def _settings_key(representation) -> str:
    text = json.dumps(_settings(representation), sort_keys=True)
    kind = _settings(representation).get("kind", "image")
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    # no fsync: a cache file lost to a power cut is just recomputed, and training writes thousands
    atomic_write_bytes(path, buffer.getvalue(), fsync=False)


def labels(records: Iterable[NoteRecord]) -> tuple[np.ndarray, np.ndarray]:
    """(pitch indices, family indices) of records, as int64 arrays."""
    records = list(records)
    return (np.array([r.pitch - PITCH_MIN for r in records], dtype=np.int64),
            np.array([r.family_index for r in records], dtype=np.int64))
