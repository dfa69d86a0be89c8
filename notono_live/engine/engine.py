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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..codemaps import Codemaps, LAYERS, layer_shape, rectangle_mask
from ..constants import (CODEBOOK_SIZE, DEFAULT_OUTPUT_SAMPLE_RATE, FAMILIES, MAX_VARIATIONS, PITCH_MAX,
                         PITCH_MIN, check_pitch, family_index)
from . import render
from .store import SoundStore, VersionRecord

log = logging.getLogger("notono_live.engine")

Progress = Callable[[float, str], None]
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 192_000


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


@dataclass
class ControlState:
    """What a MIDI controller has dialled in: region, layer, sampling and conditioning.

    Args:
        region_x: first column of the region.
        region_y: lowest row of the region.
        region_width: columns.
        region_height: rows.
        layer: 'top' or 'bottom'.
        temperature: sampling temperature (paper: 1.0).
        pitch: MIDI pitch for generate, -1 to keep the sound's own for edits.
        family: family name for generate; '' keeps the sound's own for edits.
    """

    region_x: int = 0
    region_y: int = 0
    region_width: int = 1
    region_height: int = 1
    layer: str = "top"
    temperature: float = 1.0
    pitch: int = 60
    family: str = "keyboard"


CONTROL_NAMES = ("region_x", "region_y", "region_width", "region_height", "layer", "temperature",
                 "pitch", "family")
ACTIONS = ("generate", "inpaint", "new_bottom", "undo", "redo")


class Engine:
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
        per_sound = [dict(params, **self._picked(sounds, i)) for i in range(len(sounds.maps))]
        return self._render_new_sounds(sounds.maps, pitch, family, "generate", per_sound, progress,
                                       audio=sounds.audio)

    def encode_file(self, path: str, pitch: int = 60, family: str = "keyboard",
                    progress: Progress = _no_progress) -> VersionRecord:
        from ..audio_io import ResampledAudioWarning, load_audio

        check_pitch(pitch)
        self.check_family(family)
        file = Path(path).expanduser()
        if not path or not file.is_file():
            raise AudioFileError(f"audio file {path!r} does not exist or is not a file")
        progress(0.1, "reading")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ResampledAudioWarning)
                audio = load_audio(file)
            for warning in caught:
                log.info("%s", warning.message)   # resampling a user's file is expected, not a problem
        except ValueError as error:
            raise AudioFileError(str(error)) from None
        except OSError as error:
            raise AudioFileError(f"cannot read audio file {path!r}: {error}") from None
        progress(0.3, "encoding")
        maps = self.model.encode(np.asarray(audio, dtype=np.float32))
        return self._render_new_sounds(maps, pitch, family, "encode", {"source": str(file.resolve())},
                                       progress)[0]

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
        base = self.store.get(sound)
        pitch, family = self._conditioning(base, pitch, family)
        self.check_sampling(temperature, top_p)
        guidance = self.resolve_guidance(guidance)
        seed = self._seed(seed)
        progress(0.1, "sampling")
        sounds = self.model.regenerate_bottom_sounds(base.codemaps, pitch, family, n=1, temperature=temperature,
                                                     top_p=top_p, seed=seed, guidance=guidance,
                                                     candidates=self.candidates,
                                                     on_decoding=lambda: progress(0.7, "decoding"))
        params = {"temperature": temperature, "top_p": top_p, "seed": seed, "guidance": guidance,
                  **self._picked(sounds, 0)}
        return self._render_version(base, sounds.maps[0], pitch, family, "bottom", params, progress,
                                    audio=sounds.audio[0])

    def set_cells(self, sound: int, layer: str, cells: Sequence[tuple[int, int, int]],
                  progress: Progress = _no_progress) -> VersionRecord:
        self.check_layer(layer)
        base = self.store.get(sound)
        self.cells_mask(layer, [(r, c) for r, c, _ in cells])
        grid = base.codemaps.layer(layer).copy()
        for r, c, code in cells:
            if not (0 <= code < CODEBOOK_SIZE):
                raise ValueError(f"code {code} at cell ({r}, {c}) is outside 0..{CODEBOOK_SIZE - 1}")
            grid[r, c] = code
        maps = base.codemaps.replace(layer, grid)
        return self._render_version(base, maps, base.pitch, base.family, "set",
                                    {"layer": layer, "cells": [list(c) for c in cells]}, progress)

    def erase_region(self, sound: int, layer: str, row: int, col: int, height: int, width: int,
                     amount_db: float = 24.0, progress: Progress = _no_progress) -> VersionRecord:
        """Lower the level inside a region of the decoded sound, re-encode it, and keep the new codes
        only inside the region (and, for a top region, the bottom cells under it): cells outside stay
        exactly as they were."""
        self.check_layer(layer)
        mask = rectangle_mask(layer, row, col, height, width)
        if not (0.0 <= amount_db <= 120.0):
            raise ValueError(f"amount_db {amount_db} must be in 0..120")
        base = self.store.get(sound)
        progress(0.1, "decoding")
        audio = self._decoded(base)
        quieter = render.attenuate_region(audio, layer_shape(layer), row, col, height, width, amount_db)
        progress(0.4, "encoding")
        encoded = self.model.encode(quieter)[0]
        if layer == "top":
            top = np.where(mask, encoded.top, base.codemaps.top)
            bottom_mask = np.repeat(np.repeat(mask, 2, axis=0), 2, axis=1)
            bottom = np.where(bottom_mask, encoded.bottom, base.codemaps.bottom)
        else:
            top = base.codemaps.top
            bottom = np.where(mask, encoded.bottom, base.codemaps.bottom)
        params = {"layer": layer, "region": [row, col, height, width], "amount_db": amount_db}
        return self._render_version(base, Codemaps(top, bottom), base.pitch, base.family, "erase", params,
                                    progress)

    def randomize_region(self, sound: int, layer: str, row: int, col: int, height: int, width: int,
                         seed: int = -1, progress: Progress = _no_progress) -> VersionRecord:
        self.check_layer(layer)
        mask = rectangle_mask(layer, row, col, height, width)
        base = self.store.get(sound)
        seed = self._seed(seed)
        grid = base.codemaps.layer(layer).copy()
        rng = np.random.default_rng(seed)
        grid[mask] = rng.integers(0, CODEBOOK_SIZE, size=int(mask.sum()))
        params = {"layer": layer, "region": [row, col, height, width], "seed": seed}
        return self._render_version(base, base.codemaps.replace(layer, grid), base.pitch, base.family,
                                    "randomize", params, progress)

    def sample_pack(self, sound: int, pitch_low: int, pitch_high: int, step: int = 1, seed: int = -1,
                    guidance: float = -1.0, progress: Progress = _no_progress,
                    on_sound: Callable[[VersionRecord], None] | None = None) -> list[VersionRecord]:
        """Keep a sound's top map and render its bottom at each pitch of a range: new sounds."""
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
            report(0.0, "sampling")
            maps = self.model.regenerate_bottom(base.codemaps, pitch, base.family, n=1, seed=seed + i,
                                                guidance=guidance)[0]
            params = {"source": [base.sound, base.version], "seed": seed + i, "guidance": guidance}
            record = self._render_new_sounds([maps], pitch, base.family, "pack", params, report)[0]
            out.append(record)
            if on_sound:
                on_sound(record)
        return out

    def codemaps(self, sound: int, version: int = 0) -> tuple[VersionRecord, Codemaps]:
        record = self.store.get(sound, version)
        return record, record.codemaps

    # --- MIDI control surface (ControlSink) --------------------------------------------------

    def set_control(self, name: str, value: Any) -> None:
        """Set one control from a MIDI controller; raises ValueError for an unknown name or bad value."""
        if name not in CONTROL_NAMES:
            raise ValueError(f"unknown control {name!r}; expected one of {', '.join(CONTROL_NAMES)}")
        c = self.controls
        if name == "layer":
            value = LAYERS[int(value) % 2] if isinstance(value, (int, float)) else self.check_layer(value)
        elif name == "family":
            value = FAMILIES[int(value) % len(FAMILIES)] if isinstance(value, (int, float)) \
                else self.check_family(value)
        elif name == "pitch":
            value = int(np.clip(int(value), PITCH_MIN, PITCH_MAX))
        elif name == "temperature":
            value = float(np.clip(float(value), 0.05, 10.0))
        else:
            rows, cols = layer_shape(c.layer)
            limit = {"region_x": cols - 1, "region_y": rows - 1, "region_width": cols, "region_height": rows}[name]
            low = 1 if name in ("region_width", "region_height") else 0
            value = int(np.clip(int(value), low, limit))
        setattr(c, name, value)

    def control_values(self) -> list[tuple[str, Any]]:
        """Every control's current value, layer first (the region's range depends on it)."""
        names = ("layer",) + tuple(n for n in CONTROL_NAMES if n != "layer")
        return [(name, getattr(self.controls, name)) for name in names]

    def apply_controls(self, **values: Any) -> None:
        """Set controls from an OSC request (the device's last choice is what a MIDI pad repeats) and
        tell `on_control_changed`, so MIDI pick-up and region clamping see the real values."""
        names = sorted(values, key=lambda n: n != "layer")   # layer first: it sets the region's range
        for name in names:
            self.set_control(name, values[name])
        if self.on_control_changed is not None:
            for name in names:
                try:
                    self.on_control_changed(name, getattr(self.controls, name))
                except Exception:   # MIDI bookkeeping must never fail a request
                    log.exception("could not tell MIDI that %s changed", name)

    def trigger(self, action: str) -> None:
        """Run an action on the current sound with the dialled-in controls (through the daemon's
        worker when one is attached, so the result reaches the device like any render)."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
        if self.on_trigger is not None:
            self.on_trigger(action)
        else:
            self.run_action(action)

    def run_action(self, action: str, progress: Progress = _no_progress) -> list[VersionRecord]:
        c = self.controls
        if action == "generate":
            return self.generate(c.pitch, c.family, temperature=c.temperature, progress=progress)
        if self.current_sound is None:
            raise LookupError(f"no current sound for {action}: generate or select one first")
        sound = self.current_sound
        if action == "inpaint":
            rows, cols = layer_shape(c.layer)
            row, col = min(c.region_y, rows - 1), min(c.region_x, cols - 1)
            height, width = min(c.region_height, rows - row), min(c.region_width, cols - col)
            return [self.inpaint_region(sound, c.layer, row, col, height, width, temperature=c.temperature,
                                        progress=progress)]
        if action == "new_bottom":
            return [self.regenerate_bottom(sound, temperature=c.temperature, progress=progress)]
        if action == "undo":
            return [self.undo(sound)]
        return [self.redo(sound)]

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
        of draws, and how clearly it sits on the asked pitch (none when nothing was compared, or
        when the score is not finite)."""
        score = sounds.pitch_scores[i]
        return {"candidates": sounds.candidates, **({"pitch_score": round(score, 4)} if math.isfinite(score) else {})}

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
        out_audio = render.resample_for_output(audio16k, sample_rate)
        png = render.spectrogram_png(audio16k)
        label = render.clip_label(family, pitch, sound, version)
        stem = f"{sound:04d}-{family}-{render.note_name(pitch).replace('#', 's')}-v{version:03d}"
        record = VersionRecord(sound=sound, version=version, parent=parent, operation=operation, pitch=pitch,
                               family=family, wav="", png="", sample_rate=sample_rate, label=label,
                               codemaps=maps, params=params)
        final = self.store.commit(record, out_audio, png, self.output_folder, stem)
        self._remember((sound, version), audio16k)
        log.info("rendered %s -> %s", label, final.wav)
        return final


def _scaled(progress: Progress, start: float, end: float, stage: str) -> Progress:
    def report(fraction: float, sub_stage: str) -> None:
        progress(start + (end - start) * fraction, f"{stage}: {sub_stage}")
    return report
