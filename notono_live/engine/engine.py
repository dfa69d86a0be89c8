"""The engine: every operation a user performs on sounds, with no knowledge of OSC or MIDI.

Operations take plain Python values, validate them (ValueError for a bad value, KeyError/LookupError
for an unknown sound, version or empty undo stack, FileNotFoundError/OSError for a bad path, each with
a message naming what was wrong), run the model, and commit a new immutable version through the
`SoundStore`. The OSC server, `notono-live send`, MIDI and bench all drive this one class.

Model calls run without holding the store lock, so listing, undo and reading codemaps stay instant
while a render runs on the inference worker.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..codemaps import Codemaps, LAYERS, layer_shape, rectangle_mask
from ..constants import (CODEBOOK_SIZE, DEFAULT_OUTPUT_SAMPLE_RATE, MAX_VARIATIONS, SAMPLE_RATE, check_pitch,
                         family_index)
from . import levels, pitching, render
from .controls import ACTIONS, CONTROL_NAMES, ControlState, ControlSurface  # noqa: F401 (re-exported)
from .store import SoundStore, VersionRecord

log = logging.getLogger("notono_live.engine")
_PICTURES = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notono-png")   # renders run one at a time

Progress = Callable[[float, str], None]
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 192_000
ERASE_PASSES = 3           # encodes an erase may try to reach its amount
ERASE_TOLERANCE_DB = 3.0   # how close to the amount the decoded region must come to stop trying
OWED_CHECKS = 32           # kept renders awaiting their pitch check; an older one is dropped unchecked


def _no_progress(fraction: float, stage: str) -> None:
    pass


class AudioFileError(ValueError):
    """An audio file to encode that is missing, unreadable or not audio; the message names it."""


def resolve_folder(path: str | Path) -> Path:
    """Absolute, symlink-free form of a folder path (it need not exist yet)."""
    return Path(os.path.realpath(Path(path).expanduser()))


def is_inside(path: Path, folder: Path) -> bool:
    try:
        return os.path.commonpath([str(path), str(folder)]) == str(folder)
    except ValueError:   # different drives on Windows
        return False


class Engine(ControlSurface):
    """Operations on sounds and their histories.

    Args:
        model: a loaded `NotonoModel` (or anything with its API).
        store: where versions live.
        output_folder: where new WAV/PNG files go; must be inside `allowed_folders`.
        allowed_folders: folders the client may choose as output folder (and their sub-folders).
        sample_rate: sample rate of rendered WAVs (the paper's audio is 16 kHz; Live sets run at 44.1+).
    """

    def __init__(self, model: Any, store: SoundStore, output_folder: str | Path,
                 allowed_folders: Iterable[str | Path] = (), sample_rate: int = DEFAULT_OUTPUT_SAMPLE_RATE,
                 default_guidance: float | None = None, candidates: int | None = None) -> None:
        self.model = model
        # draws per generated sound and per new bottom, of which the one best on the asked pitch is
        # kept (`NotonoModel.generate_sounds`, `regenerate_bottom_sounds`); None: the model's default
        self.candidates: int | None = None
        if candidates is not None:
            from ..models.bundle import check_candidates

            self.candidates = check_candidates(candidates)
        # what a request's guidance -1 means: this scale, or the model's default when None
        self.default_guidance: float | None = None
        if default_guidance is not None and default_guidance != -1:
            self.default_guidance = self.resolve_guidance(float(default_guidance))
        self.store = store
        self.default_output = resolve_folder(output_folder)
        self.allowed_folders = [resolve_folder(f) for f in allowed_folders]
        if not any(is_inside(self.default_output, f) for f in self.allowed_folders):
            self.allowed_folders.append(self.default_output)
        self.output_folder = self.default_output
        self.output_folder.mkdir(parents=True, exist_ok=True)
        self.sample_rate = self.check_sample_rate(sample_rate)
        self.controls = ControlState()
        self.current_sound: int | None = None
        self.on_trigger: Callable[[str], None] | None = None   # set by the daemon (routes to the worker)
        # told of each control changed other than by MIDI (the daemon passes MidiHandle.sync)
        self.on_control_changed: Callable[[str, Any], None] | None = None
        self._audio_cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        # (sound, version) -> (16 kHz audio, pitch) of each render whose pYIN check is still to run
        self._owed_checks: OrderedDict[tuple[int, int], tuple[np.ndarray, int]] = OrderedDict()
        self._rng = np.random.default_rng()
        self._local = threading.local()   # a render's own output rate (see `output_rate`)

    # --- validation -------------------------------------------------------------------------

    @staticmethod
    def check_sample_rate(sample_rate: int) -> int:
        if not (MIN_SAMPLE_RATE <= int(sample_rate) <= MAX_SAMPLE_RATE):
            raise ValueError(f"sample rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")
        return int(sample_rate)

    @staticmethod
    def check_family(family: str) -> str:
        family_index(family)
        return family

    @staticmethod
    def check_sampling(temperature: float, top_p: float, top_k: int = 0) -> None:
        if not (0.0 < temperature <= 10.0):
            raise ValueError(f"temperature {temperature} must be in (0, 10]")
        if not (0.0 < top_p <= 1.0):
            raise ValueError(f"top_p {top_p} must be in (0, 1]")
        if not (0 <= top_k <= CODEBOOK_SIZE):
            raise ValueError(f"top_k {top_k} must be in 0..{CODEBOOK_SIZE}")

    def resolve_guidance(self, guidance: float, generating: bool = False) -> float:
        """The guidance scale a request asks for. -1 means the daemon's default: the scale given to
        `serve --guidance` for every operation, else the model's (`default_guidance` when generating
        from nothing, `edit_guidance` for edits). Otherwise 0-10, and anything but 1 needs priors
        trained with condition dropout."""
        if guidance == -1:
            if self.default_guidance is not None:
                return self.default_guidance
            return self.model.default_guidance if generating else self.model.edit_guidance
        try:
            return self.model.check_guidance(guidance)
        except ValueError as error:
            raise ValueError(f"{error}; -1 uses the daemon's default") from None

    @staticmethod
    def check_layer(layer: str) -> str:
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}; expected 'top' or 'bottom'")
        return layer

    def _seed(self, seed: int) -> int:
        if seed == -1:
            return int(self._rng.integers(0, 2**31 - 1))
        if not (0 <= seed < 2**31):
            raise ValueError(f"seed {seed} must be -1 or in 0..{2**31 - 1}")
        return int(seed)

    def _conditioning(self, base: VersionRecord, pitch: int, family: str) -> tuple[int, str]:
        pitch = base.pitch if pitch == -1 else check_pitch(pitch)
        family = base.family if family == "" else self.check_family(family)
        return pitch, family

    @staticmethod
    def cells_mask(layer: str, cells: Sequence[tuple[int, int]]) -> np.ndarray:
        rows, cols = layer_shape(layer)
        if not cells:
            raise ValueError("no cells given")
        mask = np.zeros((rows, cols), dtype=bool)
        for r, c in cells:
            if not (0 <= r < rows and 0 <= c < cols):
                raise ValueError(f"cell ({r}, {c}) is outside the {layer} map ({rows} rows x {cols} columns)")
            mask[r, c] = True
        return mask

    # --- output folder ----------------------------------------------------------------------

    def set_output_folder(self, path: str) -> Path:
        """Use `path` for new files ('' restores the default); it must lie inside an allowed folder."""
        if path == "":
            folder = self.default_output
        else:
            if "\x00" in path:
                raise PermissionError("output folder path contains a NUL byte")
            if not os.path.isabs(os.path.expanduser(path)):
                raise PermissionError(f"output folder {path!r} must be an absolute path")
            folder = resolve_folder(path)
            if not any(is_inside(folder, allowed) for allowed in self.allowed_folders):
                allowed = ", ".join(str(f) for f in self.allowed_folders)
                raise PermissionError(f"output folder {folder} is outside the allowed folders ({allowed}); "
                                      f"allow it with `notono-live serve --allow-dir` or the config file")
            if folder.exists() and not folder.is_dir():
                raise NotADirectoryError(f"output folder {folder} exists and is not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"output folder {folder} is not writable")
        self.output_folder = folder
        return folder

    @staticmethod
    def project_folder(set_path: str) -> Path:
        """Where renders for a saved Live set go: `Samples/NOTONO` in the set's project folder (the
        folder of the `.als` file, which must exist). Only checked here; the folder is made by the
        first render. The one folder outside the allowed ones the daemon writes to: only beside a Live
        set that is there, and never through a link that leads out of its project."""
        if "\x00" in set_path or not os.path.isabs(os.path.expanduser(set_path)):
            raise PermissionError(f"Live set {set_path!r} must be an absolute path")
        set_file = Path(set_path).expanduser().resolve()
        if set_file.suffix.lower() != ".als":
            raise PermissionError(f"{set_file} is not a Live set (.als)")
        if not set_file.is_file():
            raise FileNotFoundError(f"no Live set {set_file}: save the set first")
        folder = set_file.parent / "Samples" / "NOTONO"
        for part in (folder.parent, folder):
            if part.is_symlink():
                raise PermissionError(f"{part} is a link: renders stay out of folders it could lead to")
            if part.exists() and not part.is_dir():
                raise NotADirectoryError(f"{part} exists and is not a folder")
        existing = folder if folder.is_dir() else folder.parent if folder.parent.is_dir() else set_file.parent
        if not os.access(existing, os.W_OK):
            raise PermissionError(f"{existing} is not writable")
        return folder

    @contextmanager
    def output_to(self, folder: Path | None) -> Iterator[Path]:
        """Write new files to `folder` inside the block, on this thread only (None: the output folder),
        so each client's renders land in its own Live project."""
        previous = getattr(self._local, "output_folder", None)
        self._local.output_folder = folder
        try:
            yield folder or self.output_folder
        finally:
            self._local.output_folder = previous

    def set_sample_rate(self, sample_rate: int) -> int:
        """The default rate of rendered WAVs (for renders that name none, e.g. MIDI-triggered)."""
        self.sample_rate = self.check_sample_rate(sample_rate)
        return self.sample_rate

    @contextmanager
    def output_rate(self, sample_rate: int | None) -> Iterator[int]:
        """Render WAVs at `sample_rate` inside the block, on this thread only (None: the default), so
        each OSC client gets files at the rate it asked for without changing them for the others."""
        previous = getattr(self._local, "sample_rate", None)
        rate = self.sample_rate if sample_rate is None else self.check_sample_rate(sample_rate)
        self._local.sample_rate = rate
        try:
            yield rate
        finally:
            self._local.sample_rate = previous

    # --- reading ----------------------------------------------------------------------------

    def get(self, sound: int, version: int = 0) -> VersionRecord:
        return self.store.get(sound, version)

    def sounds(self) -> list[tuple[VersionRecord, int]]:
        """(current version, number of versions) of every sound."""
        out = []
        for sound in self.store.sound_ids():
            history = self.store.history(sound)
            out.append((history.head, len(history.versions)))
        return out

    def versions(self, sound: int) -> list[tuple[VersionRecord, bool]]:
        history = self.store.history(sound)
        return [(history.versions[v], v == history.current) for v in sorted(history.versions)]

    def undo(self, sound: int) -> VersionRecord:
        return self.store.undo(sound)

    def redo(self, sound: int) -> VersionRecord:
        return self.store.redo(sound)

    def checkout(self, sound: int, version: int) -> VersionRecord:
        return self.store.checkout(sound, version)

    def select(self, sound: int) -> VersionRecord:
        record = self.store.get(sound)
        self.current_sound = sound
        return record

    def find_file(self, path: str) -> VersionRecord:
        """Make the version whose WAV `path` is (or a copy of it) current, and its sound the current one:
        a clip dropped back on the device, or the sound a saved Live set remembers, edits on from there."""
        if "\x00" in path or not os.path.isabs(os.path.expanduser(path)):
            raise FileNotFoundError(f"{path!r} is not an absolute path")
        found = self.store.find_file(path)
        record = self.store.checkout(found.sound, found.version)
        self.current_sound = record.sound
        return record

    # --- operations that render -------------------------------------------------------------

    def generate(self, pitch: int, family: str, temperature: float = 1.0, top_p: float = 0.8,
                 variations: int = 1, seed: int = -1, top_k: int = 0, guidance: float = -1.0,
                 progress: Progress = _no_progress) -> list[VersionRecord]:
        check_pitch(pitch)
        self.check_family(family)
        self.check_sampling(temperature, top_p, top_k)
        guidance = self.resolve_guidance(guidance, generating=True)
        if not (1 <= variations <= MAX_VARIATIONS):
            raise ValueError(f"variations {variations} must be in 1..{MAX_VARIATIONS}")
        seed = self._seed(seed)
        progress(0.1, "sampling")
        sounds = self.model.generate_sounds(pitch, family, n=variations, temperature=temperature, top_p=top_p,
                                            top_k=top_k, seed=seed, guidance=guidance, candidates=self.candidates,
                                            on_decoding=lambda: progress(0.7, "decoding"))
        params = {"temperature": temperature, "top_p": top_p, "top_k": top_k, "seed": seed, "guidance": guidance}
        per_sound = [dict(params, **self._picked(sounds, i)) for i in range(len(sounds.audio))]
        records = self._render_new_sounds(sounds.maps, pitch, family, "generate", per_sound, progress,
                                          audio=sounds.audio)
        for record, audio in zip(records, sounds.audio):
            self._owe_pitch_check(record, audio)
        return records

    def encode_file(self, path: str, pitch: int = -1, family: str = "keyboard",
                    progress: Progress = _no_progress) -> VersionRecord:
        """A new sound from an audio file. pitch -1: estimated from the file with pYIN. The version's
        notices say when the pitch was estimated and when the file was trimmed or padded to 4 s."""
        from ..audio_io import ResampledAudioWarning, load_audio

        if pitch != -1:
            check_pitch(pitch)
        self.check_family(family)
        if path and not os.path.isabs(os.path.expanduser(path)):
            raise AudioFileError(f"audio file {path!r} is a relative path; the daemon needs an absolute one "
                                 f"(`notono-live send` makes relative paths absolute against your folder)")
        file = Path(path).expanduser()
        if not path or not file.is_file():
            raise AudioFileError(f"audio file {path!r} does not exist or is not a file")
        progress(0.1, "reading")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ResampledAudioWarning)
                audio = load_audio(file)
                seconds = pitching.file_seconds(file)
            for warning in caught:
                log.info("%s", warning.message)   # resampling a user's file is expected, not a problem
        except ValueError as error:
            raise AudioFileError(str(error)) from None
        except OSError as error:
            raise AudioFileError(f"cannot read audio file {path!r}: {error}") from None
        notices = pitching.length_notices(seconds)
        if pitch == -1:
            progress(0.2, "estimating pitch")
            pitch, notice = pitching.estimated_pitch_notice(audio)
            notices.append(notice)
        progress(0.3, "encoding")
        maps = self.model.encode(np.asarray(audio, dtype=np.float32))
        params = {"source": str(file.resolve()), "source_seconds": round(seconds, 3), "notices": notices}
        return self._render_new_sounds(maps, pitch, family, "encode", params, progress)[0]

    def inpaint_region(self, sound: int, layer: str, row: int, col: int, height: int, width: int,
                       pitch: int = -1, family: str = "", temperature: float = 1.0, top_p: float = 0.8,
                       seed: int = -1, guidance: float = -1.0, progress: Progress = _no_progress) -> VersionRecord:
        self.check_layer(layer)
        mask = rectangle_mask(layer, row, col, height, width)
        return self._inpaint(sound, layer, mask, pitch, family, temperature, top_p, seed, guidance, progress,
                             {"region": [row, col, height, width]})

    def inpaint_cells(self, sound: int, layer: str, cells: Sequence[tuple[int, int]], pitch: int = -1,
                      family: str = "", temperature: float = 1.0, top_p: float = 0.8, seed: int = -1,
                      guidance: float = -1.0, progress: Progress = _no_progress) -> VersionRecord:
        self.check_layer(layer)
        mask = self.cells_mask(layer, cells)
        return self._inpaint(sound, layer, mask, pitch, family, temperature, top_p, seed, guidance, progress,
                             {"cells": [list(c) for c in cells]})

    def _inpaint(self, sound, layer, mask, pitch, family, temperature, top_p, seed, guidance, progress, extra):
        base = self.store.get(sound)
        pitch, family = self._conditioning(base, pitch, family)
        self.check_sampling(temperature, top_p)
        guidance = self.resolve_guidance(guidance)
        seed = self._seed(seed)
        progress(0.1, "sampling")
        maps = self.model.inpaint(base.codemaps, layer, mask, pitch, family, n=1, temperature=temperature,
                                  top_p=top_p, seed=seed, guidance=guidance)[0]
        params = {"layer": layer, **extra, "temperature": temperature, "top_p": top_p, "seed": seed,
                  "guidance": guidance}
        return self._render_version(base, maps, pitch, family, "inpaint", params, progress)

    def regenerate_bottom(self, sound: int, pitch: int = -1, family: str = "", temperature: float = 1.0,
                          top_p: float = 0.8, seed: int = -1, guidance: float = -1.0,
                          progress: Progress = _no_progress) -> VersionRecord:
        """A new bottom under the sound's top. At another pitch than the sound's, the top (which carries
        the pitch) is re-encoded from the sound shifted there first (`pitching.transpose`)."""
        base = self.store.get(sound)
        pitch, family = self._conditioning(base, pitch, family)
        self.check_sampling(temperature, top_p)
        guidance = self.resolve_guidance(guidance)
        seed = self._seed(seed)
        progress(0.1, "sampling")
        params = {"temperature": temperature, "top_p": top_p, "seed": seed, "guidance": guidance}
        if pitch != base.pitch:
            moved = self._transpose(base, pitch, family, seed, guidance, progress)
            params.update(moved.params, notices=moved.notices)
            return self._render_version(base, moved.maps, pitch, family, "bottom", params, progress,
                                        audio=moved.audio)
        sounds = self.model.regenerate_bottom_sounds(base.codemaps, pitch, family, n=1, temperature=temperature,
                                                     top_p=top_p, seed=seed, guidance=guidance,
                                                     candidates=self.candidates,
                                                     on_decoding=lambda: progress(0.7, "decoding"))
        params.update(self._picked(sounds, 0))
        record = self._render_version(base, sounds.maps[0], pitch, family, "bottom", params, progress,
                                      audio=sounds.audio[0])
        self._owe_pitch_check(record, sounds.audio[0])
        return record

    def _transpose(self, base: VersionRecord, pitch: int, family: str, seed: int, guidance: float,
                   progress: Progress) -> pitching.Transposed:
        candidates = self.candidates or self.model.candidates   # as generation resolves it
        progress(0.1, "transposing")
        return pitching.transpose(self.model, base.codemaps, self._decoded(base), base.pitch, pitch, family,
                                  seed, guidance, candidates, on_decoding=lambda: progress(0.7, "decoding"))

    def _owe_pitch_check(self, record: VersionRecord, audio: np.ndarray) -> None:
        with self._cache_lock:
            self._owed_checks[(record.sound, record.version)] = (np.asarray(audio, dtype=np.float32), record.pitch)
            while len(self._owed_checks) > OWED_CHECKS:
                self._owed_checks.popitem(last=False)

    def check_pitch(self, records: Sequence[VersionRecord]) -> list[VersionRecord]:
        """Run the pYIN check that a generated sound or a new bottom owes once it is rendered.

        The draw was kept by the harmonic score (`models.pitch_selection`, a few ms); pYIN (about 75
        ms a sound) says whether it still misses its label's pitch. The daemon runs this after the
        sound's reply has gone out, so the clip need not wait for it. A miss is added to the
        version's notices (`pitch_missed`) in the store; the versions that missed are returned as
        they now are. Records that owe no check (other operations, or already checked) are skipped."""
        missed = []
        for record in records:
            with self._cache_lock:
                owed = self._owed_checks.pop((record.sound, record.version), None)
            if owed is None:
                continue
            miss = pitching.pitch_miss(*owed)
            if miss:
                missed.append(self.store.add_notices(record.sound, record.version, [miss]))
        return missed

    def _codebook_size(self, layer: str) -> int:
        """Codes of the model's codebook for `layer` (its cells lie below it)."""
        return self.model.codebook_sizes[LAYERS.index(layer)]

    def set_cells(self, sound: int, layer: str, cells: Sequence[tuple[int, int, int]],
                  progress: Progress = _no_progress) -> VersionRecord:
        self.check_layer(layer)
        base = self.store.get(sound)
        self.cells_mask(layer, [(r, c) for r, c, _ in cells])
        grid = base.codemaps.layer(layer).copy()
        codes = self._codebook_size(layer)
        for r, c, code in cells:
            if not (0 <= code < codes):
                raise ValueError(f"code {code} at cell ({r}, {c}) is outside 0..{codes - 1}")
            grid[r, c] = code
        maps = base.codemaps.replace(layer, grid)
        return self._render_version(base, maps, base.pitch, base.family, "set",
                                    {"layer": layer, "cells": [list(c) for c in cells]}, progress)

    def erase_region(self, sound: int, layer: str, row: int, col: int, height: int, width: int,
                     amount_db: float = 24.0, progress: Progress = _no_progress) -> VersionRecord:
        """Lower the level inside a region of the decoded sound, re-encode it, and keep the new codes
        only inside the region (and, for a top region, the bottom cells under it): cells outside stay
        exactly as they were. The codes only approximate a quieter region, so the decoded result is
        measured (`render.region_power`) and, while it is more than ERASE_TOLERANCE_DB off the amount,
        the sound is attenuated by the shortfall more and re-encoded, up to ERASE_PASSES times; the
        closest pass is kept and its drop recorded (`params["erased_db"]`) and told (notice `erased`)."""
        self.check_layer(layer)
        mask = rectangle_mask(layer, row, col, height, width)
        if not (0.0 <= amount_db <= 120.0):
            raise ValueError(f"amount_db {amount_db} must be in 0..120")
        base = self.store.get(sound)
        progress(0.1, "decoding")
        audio = self._decoded(base)
        region = (layer_shape(layer), row, col, height, width)
        # measured as the WAV will have it: without the DC and sub-audio drift that levelling removes
        before = render.region_power(levels.remove_dc(audio, SAMPLE_RATE), *region)
        if layer == "top":
            top_mask, bottom_mask = mask, np.repeat(np.repeat(mask, 2, axis=0), 2, axis=1)
        else:
            top_mask, bottom_mask = np.zeros_like(base.codemaps.top, dtype=bool), mask
        best, applied = None, float(amount_db)
        for attempt in range(ERASE_PASSES):
            progress(0.2 + 0.2 * attempt, "encoding")
            encoded = self.model.encode(render.attenuate_region(audio, *region, applied))[0]
            maps = Codemaps(np.where(top_mask, encoded.top, base.codemaps.top),
                            np.where(bottom_mask, encoded.bottom, base.codemaps.bottom))
            decoded = self.model.decode([maps])[0]
            after = render.region_power(levels.remove_dc(decoded, SAMPLE_RATE), *region)
            reached = 10.0 * math.log10(max(before, 1e-20) / max(after, 1e-20))
            if best is None or abs(reached - amount_db) < abs(best[2] - amount_db):
                best = (maps, decoded, reached, attempt + 1)
            if before <= 1e-12 or abs(reached - amount_db) <= ERASE_TOLERANCE_DB:
                break
            applied = min(max(applied + (amount_db - reached), 0.0), 120.0)
        maps, decoded, reached, passes = best
        notice = (f"the region is {reached:.1f} dB quieter in the decoded sound ({amount_db:g} dB asked, "
                  f"{passes} encode{'s' if passes > 1 else ''})")
        if before <= 1e-12:
            notice = "the region was silent already; nothing to lower"
        elif abs(reached - amount_db) > ERASE_TOLERANCE_DB:
            notice += "; the codes cannot bring this region closer to the amount"
        params = {"layer": layer, "region": [row, col, height, width], "amount_db": amount_db,
                  "erased_db": round(reached, 2), "passes": passes, "notices": [["erased", notice]]}
        return self._render_version(base, maps, base.pitch, base.family, "erase", params, progress,
                                    audio=decoded)

    def randomize_region(self, sound: int, layer: str, row: int, col: int, height: int, width: int,
                         seed: int = -1, progress: Progress = _no_progress) -> VersionRecord:
        self.check_layer(layer)
        mask = rectangle_mask(layer, row, col, height, width)
        base = self.store.get(sound)
        seed = self._seed(seed)
        grid = base.codemaps.layer(layer).copy()
        rng = np.random.default_rng(seed)
        grid[mask] = rng.integers(0, self._codebook_size(layer), size=int(mask.sum()))
        params = {"layer": layer, "region": [row, col, height, width], "seed": seed}
        return self._render_version(base, base.codemaps.replace(layer, grid), base.pitch, base.family,
                                    "randomize", params, progress)

    def sample_pack(self, sound: int, pitch_low: int, pitch_high: int, step: int = 1, seed: int = -1,
                    guidance: float = -1.0, progress: Progress = _no_progress,
                    on_sound: Callable[[VersionRecord], None] | None = None) -> list[VersionRecord]:
        """The sound transposed to each pitch of a range (`pitching.transpose`): one new sound each."""
        check_pitch(pitch_low)
        check_pitch(pitch_high)
        if pitch_high < pitch_low:
            raise ValueError(f"pitch_high {pitch_high} is below pitch_low {pitch_low}")
        if not (1 <= step <= 24):
            raise ValueError(f"step {step} must be in 1..24")
        guidance = self.resolve_guidance(guidance)
        base = self.store.get(sound)
        seed = self._seed(seed)
        pitches = list(range(pitch_low, pitch_high + 1, step))
        out = []
        for i, pitch in enumerate(pitches):
            report = _scaled(progress, i / len(pitches), (i + 1) / len(pitches), f"pitch {pitch}")
            moved = self._transpose(base, pitch, base.family, seed + i, guidance, report)
            params = {"source": [base.sound, base.version], "seed": seed + i, "guidance": guidance,
                      **moved.params, "notices": moved.notices}
            record = self._render_new_sounds([moved.maps], pitch, base.family, "pack", params, report,
                                             audio=moved.audio[None])[0]
            out.append(record)
            if on_sound:
                on_sound(record)
        return out

    def codemaps(self, sound: int, version: int = 0) -> tuple[VersionRecord, Codemaps]:
        record = self.store.get(sound, version)
        return record, record.codemaps

    # --- rendering --------------------------------------------------------------------------

    def _decoded(self, record: VersionRecord) -> np.ndarray:
        key = (record.sound, record.version)
        with self._cache_lock:
            if key in self._audio_cache:
                self._audio_cache.move_to_end(key)
                return self._audio_cache[key]
        audio = self.model.decode([record.codemaps])[0]
        self._remember(key, audio)
        return audio

    def _remember(self, key: tuple[int, int], audio: np.ndarray) -> None:
        with self._cache_lock:
            self._audio_cache[key] = np.asarray(audio, dtype=np.float32)
            while len(self._audio_cache) > 32:
                self._audio_cache.popitem(last=False)

    def _render_new_sounds(self, maps: list[Codemaps], pitch: int, family: str, operation: str,
                           params: dict | list[dict], progress: Progress,
                           audio: np.ndarray | None = None) -> list[VersionRecord]:
        """Commit each of `maps` as a new sound; `audio` when they are decoded already, `params`
        one dict for all or one per sound."""
        if audio is None:
            progress(0.7, "decoding")
            audio = self.model.decode(list(maps))
        progress(0.9, "writing")
        params_of = params if isinstance(params, list) else [params] * len(maps)
        out = []
        for one_maps, one_audio, one_params in zip(maps, audio, params_of):
            sound = self.store.reserve_sound()
            out.append(self._commit(sound, 1, 0, one_maps, one_audio, pitch, family, operation, one_params))
            self.current_sound = sound
        return out

    @staticmethod
    def _picked(sounds: Any, i: int) -> dict:
        """What a version records of how sound i of `sounds` (`GeneratedSounds`) was picked: the number
        of draws, how clearly it sits on the asked pitch (none when nothing was compared, or when the
        score is not finite), and, when the draws were scored on previews of their top maps, that."""
        score = sounds.pitch_scores[i]
        return {"candidates": sounds.candidates, **({"pitch_score": round(score, 4)} if math.isfinite(score) else {}),
                **({"picked_on": "previews"} if sounds.previews is not None else {})}

    def _render_version(self, base: VersionRecord, maps: Codemaps, pitch: int, family: str, operation: str,
                        params: dict, progress: Progress, audio: np.ndarray | None = None) -> VersionRecord:
        if audio is None:
            progress(0.7, "decoding")
            audio = self.model.decode([maps])[0]
        progress(0.9, "writing")
        version = self.store.next_version(base.sound)
        record = self._commit(base.sound, version, base.version, maps, audio, pitch, family, operation, params)
        self.current_sound = base.sound
        return record

    def _commit(self, sound: int, version: int, parent: int, maps: Codemaps, audio16k: np.ndarray, pitch: int,
                family: str, operation: str, params: dict) -> VersionRecord:
        audio16k = np.nan_to_num(np.asarray(audio16k, dtype=np.float32))
        sample_rate = getattr(self._local, "sample_rate", None) or self.sample_rate
        # the picture is drawn on a thread of its own while the sound is levelled (numpy's FFT, the
        # resampler and the filters release the GIL, so the two overlap on a second core)
        picture = _PICTURES.submit(render.spectrogram_png, audio16k)
        # at the client's rate, DC-free, at the target loudness, true peak under the ceiling (levels.py);
        # what the decoder gave is kept in the version's params. The DC goes at 16 kHz, before resampling
        dc = levels.dc_dbfs(audio16k)
        out_audio, level = levels.normalise(
            render.resample_for_output(levels.remove_dc(audio16k, SAMPLE_RATE), sample_rate, clip=False),
            sample_rate, dc_removed=dc)
        params = {**params, "level": level.to_dict()}
        if level.final_lufs is None:
            params["notices"] = [*params.get("notices", []), ["silent", "too quiet to measure (below -70 LUFS): "
                                                                        "written as decoded, not levelled"]]
        png = picture.result()
        label = render.clip_label(family, pitch, sound, version)
        stem = f"{sound:04d}-{family}-{render.note_name(pitch).replace('#', 's')}-v{version:03d}"
        record = VersionRecord(sound=sound, version=version, parent=parent, operation=operation, pitch=pitch,
                               family=family, wav="", png="", sample_rate=sample_rate, label=label,
                               codemaps=maps, params=params)
        folder = getattr(self._local, "output_folder", None) or self.output_folder
        final = self.store.commit(record, out_audio, png, folder, stem)
        self._remember((sound, version), audio16k)
        log.info("rendered %s -> %s", label, final.wav)
        return final


def _scaled(progress: Progress, start: float, end: float, stage: str) -> Progress:
    def report(fraction: float, sub_stage: str) -> None:
        progress(start + (end - start) * fraction, f"{stage}: {sub_stage}")
    return report
