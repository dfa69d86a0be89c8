"""Sounds and their version histories on disk: immutable versions, atomic writes, restore on restart.

Layout (``root`` is the session folder, by default ``<user data dir>/session``)::

    root/session.json                     {"format": "notono-session", "version": 1}
    root/sounds/0001/v0001.json           one version: metadata + codemaps (immutable)
    root/sounds/0001/state.json           current version and redo stack (replaced atomically)
    <output folder>/0001-organ-C3-v001.wav  the rendered files (immutable; Live references them)
    <output folder>/0001-organ-C3-v001.png

A version is committed by writing its WAV, then its PNG, then its JSON, each through
`notono_live.fileio.atomic_write_bytes` (a hidden temporary file in the same folder, then a link that
fails rather than replace a file another writer created meanwhile). The JSON is the commit point: a
version exists exactly when its JSON does, and the files it names were complete before it was
written. Rendered files are never overwritten or deleted; a name already taken gets a suffix.
Temporary files left by a killed process are removed when the store opens again.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from .. import fileio
from ..codemaps import Codemaps

SESSION_FORMAT = "notono-session"
VERSION_FORMAT = "notono-version"
STATE_FORMAT = "notono-sound-state"
FORMAT_VERSION = 1
_VERSION_FILE = re.compile(r"^v(\d+)\.json$")


# The hidden temporaries `fileio.atomic_write_bytes` makes for the store's own files: ".<name>.<random>.tmp".
# Only these are removed after a crash, never another program's files in a shared Samples folder.
_TEMPORARY = re.compile(r"^\.(?:\d{4,}-.+\.(?:wav|png)|v\d+\.json|state\.json|session\.json)\.[a-z0-9_]+\.tmp$")


def atomic_write_bytes(path: Path, data: bytes, overwrite: bool = False, fsync: bool = False) -> Path:
    """`notono_live.fileio.atomic_write_bytes` with the store's defaults: never replace an existing
    file (rendered files are immutable; FileExistsError even when another writer creates the name
    while this one writes), and flush to disk only when asked (`--fsync`, about 10 ms a file)."""
    return fileio.atomic_write_bytes(path, data, overwrite=overwrite, fsync=fsync)


def is_temporary(name: str) -> bool:
    """True for the name of a temporary file a killed store writer may have left behind."""
    return bool(_TEMPORARY.match(name))


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """A 24-bit PCM WAV of mono float audio, in memory."""
    out = io.BytesIO()
    sf.write(out, np.asarray(audio, dtype=np.float32), int(sample_rate), subtype="PCM_24", format="WAV")
    return out.getvalue()


def remove_temporaries(folder: Path) -> int:
    """Delete temporary files a killed writer left in `folder` (never a finished file)."""
    removed = 0
    try:
        entries = list(folder.iterdir()) if folder.is_dir() else []
    except OSError:   # unreadable, or an offline volume: nothing to clean there now
        return 0
    for entry in entries:
        if is_temporary(entry.name) and entry.is_file():
            try:
                entry.unlink()
                removed += 1
            except OSError:
                pass
    return removed


@dataclass(frozen=True)
class VersionRecord:
    """One immutable version of a sound.

    Args:
        sound: sound id (from 1).
        version: version number within the sound (from 1).
        parent: version it was made from, 0 for the first.
        operation: what made it (generate, encode, inpaint, bottom, set, erase, randomize, pack).
        pitch: MIDI pitch it is conditioned on / recorded with.
        family: instrument family name.
        wav: absolute path of the rendered WAV.
        png: absolute path of the spectrogram PNG.
        sample_rate: sample rate of the WAV.
        label: clip name.
        codemaps: the codes.
        params: the request's parameters (seed, temperature, region, source...), for reproducibility.
        created: UNIX time of the commit.
        wav_sha256: SHA-256 of the WAV's bytes, so a copy of the file (Live's "Collect All and Save")
            is still recognised; empty in versions written before it was recorded.
    """

    sound: int
    version: int
    parent: int
    operation: str
    pitch: int
    family: str
    wav: str
    png: str
    sample_rate: int
    label: str
    codemaps: Codemaps
    params: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0
    wav_sha256: str = ""

    def to_json(self) -> str:
        doc = asdict(self)
        doc["codemaps"] = json.loads(self.codemaps.to_json())
        return json.dumps({"format": VERSION_FORMAT, "version_format": FORMAT_VERSION, **doc}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "VersionRecord":
        doc = json.loads(text)
        if doc.pop("format", None) != VERSION_FORMAT:
            raise ValueError("not a notono version document")
        if doc.pop("version_format", None) != FORMAT_VERSION:
            raise ValueError("unsupported version document format")
        doc["codemaps"] = Codemaps.from_json(json.dumps(doc["codemaps"]))
        # fields a later version of the format adds are left out, so its records still load here
        return cls(**{k: v for k, v in doc.items() if k in cls.__dataclass_fields__})


@dataclass
class SoundHistory:
    """A sound's versions and where its undo/redo cursor stands.

    Args:
        sound: sound id.
        versions: version number -> record.
        current: the version edits start from.
        redo: versions undo stepped back from, most recent last.
    """

    sound: int
    versions: dict[int, VersionRecord] = field(default_factory=dict)
    current: int = 0
    redo: list[int] = field(default_factory=list)

    @property
    def head(self) -> VersionRecord:
        return self.versions[self.current]


class SoundStore:
    """Every sound of a session, persisted under `root`; thread-safe.

    Args:
        root: session folder (created if needed).
        durable: fsync every file before it becomes visible (survives power loss; slower).
    """

    def __init__(self, root: str | Path, durable: bool = False) -> None:
        self.root = Path(root).expanduser().resolve()
        self.durable = durable
        self._lock = threading.RLock()
        self._sounds: dict[int, SoundHistory] = {}
        (self.root / "sounds").mkdir(parents=True, exist_ok=True)
        marker = self.root / "session.json"
        if marker.exists():
            doc = json.loads(marker.read_text(encoding="utf-8"))
            if doc.get("format") != SESSION_FORMAT or doc.get("version") != FORMAT_VERSION:
                raise ValueError(f"{marker} is not a notono session of format version {FORMAT_VERSION}")
        else:
            atomic_write_bytes(marker, json.dumps({"format": SESSION_FORMAT, "version": FORMAT_VERSION}).encode())
        self.skipped: list[str] = []   # unreadable version files found at load, for the log
        # (sound, version) by the WAV's resolved path and by its content, for `find_file`
        self._by_path: dict[str, tuple[int, int]] = {}
        self._by_digest: dict[str, tuple[int, int]] = {}
        self._undigested: list[tuple[int, int]] = []   # versions written before digests were recorded
        self._load()

    # --- loading ----------------------------------------------------------------------------

    def _load(self) -> None:
        remove_temporaries(self.root)
        folders: set[Path] = set()
        for sound_dir in sorted((self.root / "sounds").iterdir()):
            if not (sound_dir.is_dir() and sound_dir.name.isdigit()):
                continue
            remove_temporaries(sound_dir)
            history = SoundHistory(int(sound_dir.name))
            for entry in sound_dir.iterdir():
                match = _VERSION_FILE.match(entry.name)
                if not match:
                    continue
                try:
                    record = VersionRecord.from_json(entry.read_text(encoding="utf-8"))
                except (ValueError, KeyError, TypeError) as error:
                    self.skipped.append(f"{entry}: {error}")
                    continue
                history.versions[record.version] = record
                self._index(record)
                folders.add(Path(record.wav).parent)
            if not history.versions:
                continue
            newest = max(history.versions)
            history.current = newest
            state_path = sound_dir / "state.json"
            if state_path.exists():
                try:
                    state = json.loads(state_path.read_text(encoding="utf-8"))
                    # a version committed after the state was last saved is the newest edit: keep it current
                    if state.get("format") == STATE_FORMAT and state.get("known", 0) >= newest \
                            and state.get("current") in history.versions:
                        history.current = int(state["current"])
                        history.redo = [int(v) for v in state.get("redo", []) if v in history.versions]
                except (ValueError, TypeError):
                    pass
            self._sounds[history.sound] = history
        for folder in folders:
            remove_temporaries(folder)

    def _index(self, record: VersionRecord) -> None:
        key = (record.sound, record.version)
        self._by_path[_path_key(record.wav)] = key
        if record.wav_sha256:
            self._by_digest.setdefault(record.wav_sha256, key)
        else:
            self._undigested.append(key)

    # --- queries ----------------------------------------------------------------------------

    def find_file(self, path: str | Path) -> VersionRecord:
        """The version whose WAV `path` is: by its path, else by its content, so that the copy Live
        makes of a render ("Collect All and Save", a moved project) is found too.

        Raises FileNotFoundError when `path` names no version and no readable file, and LookupError
        when it is a file but not a render of this store."""
        with self._lock:
            for candidate in {_path_key(path), _path_key(os.path.realpath(os.path.expanduser(str(path))))}:
                key = self._by_path.get(candidate)
                if key is not None:
                    return self.get(*key)
        digest = file_sha256(path)   # outside the lock: hashing must not hold up a render's commit
        with self._lock:
            key = self._by_digest.get(digest)
        if key is None:
            self._digest_older_versions()
            with self._lock:
                key = self._by_digest.get(digest)
        if key is None:
            raise LookupError(f"{path} is not a render in this daemon's history")
        return self.get(*key)

    def _digest_older_versions(self) -> None:
        """Hash, once, the WAVs of versions written before digests were recorded (outside the lock)."""
        with self._lock:
            pending = [(key, self._sounds[key[0]].versions[key[1]].wav) for key in self._undigested]
            self._undigested = []
        found = {}
        for key, wav in pending:
            try:
                found[file_sha256(wav)] = key
            except (OSError, LookupError):
                continue   # a file gone, or not a render any more: nothing to match it by
        with self._lock:
            for digest, key in found.items():
                self._by_digest.setdefault(digest, key)

    def sound_ids(self) -> list[int]:
        with self._lock:
            return sorted(self._sounds)

    def history(self, sound: int) -> SoundHistory:
        with self._lock:
            if sound not in self._sounds:
                raise KeyError(f"unknown sound {sound}")
            return self._sounds[sound]

    def get(self, sound: int, version: int = 0) -> VersionRecord:
        """A version; 0 means the current one. Raises KeyError naming the unknown sound or version."""
        with self._lock:
            history = self.history(sound)
            version = version or history.current
            if version not in history.versions:
                raise KeyError(f"sound {sound} has no version {version} (it has 1..{max(history.versions)})")
            return history.versions[version]

    # --- changes ----------------------------------------------------------------------------

    def reserve_sound(self) -> int:
        """A fresh sound id; its folder exists from now on, so ids are never reused."""
        with self._lock:
            existing = [int(p.name) for p in (self.root / "sounds").iterdir() if p.name.isdigit()]
            sound = max(existing + list(self._sounds) + [0]) + 1
            (self.root / "sounds" / f"{sound:04d}").mkdir()
            return sound

    def next_version(self, sound: int) -> int:
        with self._lock:
            history = self._sounds.get(sound)
            return (max(history.versions) + 1) if history and history.versions else 1

    def commit(self, record: VersionRecord, audio: np.ndarray, png: bytes, output_folder: Path,
               file_stem: str) -> VersionRecord:
        """Write a version's WAV, PNG and JSON atomically and make it the sound's current version.

        `audio` is at `record.sample_rate`. The version number must come from `next_version` and is
        checked again under the lock, so two writers can never claim the same number."""
        output_folder = Path(output_folder)
        output_folder.mkdir(parents=True, exist_ok=True)
        data = wav_bytes(audio, record.sample_rate)
        with self._lock:
            if record.version != self.next_version(record.sound):
                raise RuntimeError(f"version {record.version} of sound {record.sound} is already taken")
            wav_path = _write_new(output_folder, file_stem, ".wav", data, self.durable)
            png_path = _write_new(output_folder, wav_path.stem, ".png", png, self.durable)
            final = VersionRecord(**{**_fields(record), "wav": str(wav_path), "png": str(png_path),
                                     "created": time.time(), "wav_sha256": hashlib.sha256(data).hexdigest()})
            sound_dir = self.root / "sounds" / f"{record.sound:04d}"
            sound_dir.mkdir(exist_ok=True)
            atomic_write_bytes(sound_dir / f"v{record.version:04d}.json", final.to_json().encode(),
                               fsync=self.durable)
            history = self._sounds.setdefault(record.sound, SoundHistory(record.sound))
            history.versions[final.version] = final
            self._index(final)
            history.current = final.version
            history.redo = []
            self._save_state(history)
            return final

    def add_notices(self, sound: int, version: int, notices: list) -> VersionRecord:
        """Append `notices` ([kind, message] pairs) to a committed version's params, in memory and
        in its JSON (the store's own file, rewritten atomically; the WAV and PNG are not touched)."""
        with self._lock:
            record = self.get(sound, version)
            params = {**record.params, "notices": [*record.params.get("notices", []), *notices]}
            updated = replace(record, params=params)
            path = self.root / "sounds" / f"{sound:04d}" / f"v{version:04d}.json"
            atomic_write_bytes(path, updated.to_json().encode(), overwrite=True, fsync=self.durable)
            self.history(sound).versions[version] = updated
            return updated

    def undo(self, sound: int) -> VersionRecord:
        with self._lock:
            history = self.history(sound)
            parent = history.head.parent
            if not parent:
                raise LookupError(f"nothing to undo: sound {sound} is at its first version {history.current}")
            history.redo.append(history.current)
            history.current = parent
            self._save_state(history)
            return history.head

    def redo(self, sound: int) -> VersionRecord:
        with self._lock:
            history = self.history(sound)
            if not history.redo:
                raise LookupError(f"nothing to redo for sound {sound}")
            history.current = history.redo.pop()
            self._save_state(history)
            return history.head

    def checkout(self, sound: int, version: int) -> VersionRecord:
        with self._lock:
            record = self.get(sound, version)
            history = self.history(sound)
            if version != history.current:
                history.current = version
                history.redo = []
                self._save_state(history)
            return record

    def _save_state(self, history: SoundHistory) -> None:
        doc = {"format": STATE_FORMAT, "version": FORMAT_VERSION, "current": history.current,
               "redo": history.redo, "known": max(history.versions)}
        atomic_write_bytes(self.root / "sounds" / f"{history.sound:04d}" / "state.json",
                           json.dumps(doc).encode(), overwrite=True)


# A render is a few MB at most; a larger file is no render, and is not read whole to find that out.
MAX_FIND_BYTES = 64 << 20


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes. Raises FileNotFoundError (no such file, or not a file) and
    LookupError (a file too large to be a render)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file {path}")
    if path.stat().st_size > MAX_FIND_BYTES:
        raise LookupError(f"{path} is larger than any render ({MAX_FIND_BYTES >> 20} MB)")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _path_key(path: str | Path) -> str:
    # no file system access: a record on an offline volume must not stall the store's loading
    return os.path.normcase(os.path.abspath(os.path.expanduser(str(path))))


def _fields(record: VersionRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


def _write_new(folder: Path, stem: str, suffix: str, data: bytes, fsync: bool) -> Path:
    """Write a new file named after `stem`, taking the next free name if another writer (a second
    daemon on a shared Live Samples folder) takes the chosen one first."""
    for _ in range(100):
        try:
            return atomic_write_bytes(_free_path(folder, stem, suffix), data, fsync=fsync)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free name for {stem}{suffix} in {folder} after 100 tries")


def _free_path(folder: Path, stem: str, suffix: str) -> Path:
    # another session may have written into the same folder (a shared Live Samples folder): never clobber
    path = folder / f"{stem}{suffix}"
    n = 2
    while path.exists():
        path = folder / f"{stem}-{n}{suffix}"
        n += 1
    return path
