"""Corpus builder: render an NSynth-layout corpus from General MIDI SoundFonts.

NSynth cannot be downloaded on these machines, so the project renders its own: for each SoundFont,
every GM program mapped to one of NSynth's 11 families (`constants.GM_PROGRAMS_BY_FAMILY`), at each
pitch and velocity, with NSynth's timing (held 3 s, released, 4 s in all, 16 kHz mono 16-bit).
The output has NSynth's layout (`examples.json` + `audio/<note>.wav`) and its JSON fields, so the
reader treats it exactly like the real dataset.

Choices worth knowing:
- Gain is set per preset (SoundFont × program), not per note: all of a preset's notes are rendered,
  then scaled together so the loudest one peaks at -1 dBFS. Velocity and the pitch-dependent level
  inside an instrument survive; instruments of very different loudness are brought level.
- Notes are rendered at 48 kHz and decimated to 16 kHz (soxr, high quality): tinysoundfont's linear
  interpolation aliases when it renders at 16 kHz directly.
- Each note starts from a silent synthesiser (the previous note is cut and its fade flushed), so
  a note's bytes do not depend on what was rendered before it: the corpus is identical on every run
  and a resumed render matches a fresh one.
- A preset the SoundFont lacks, or one that renders silence at every pitch, is skipped and
  reported; single silent notes (a key outside a preset's range) are skipped and reported too.
- A manifest (`notono_corpus.json`, written first) records the SoundFont hashes and settings. Re-running
  with the same settings resumes (existing WAVs are kept); a folder that holds anything else is
  refused. WAVs are written atomically and `examples.json` last, so a corpus with an
  `examples.json` is complete.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import __version__
from ..audio_io import fit_length, write_wav_atomic
from ..constants import (
    FAMILIES,
    GM_PROGRAMS_BY_FAMILY,
    NOTE_HOLD_S,
    NUM_SAMPLES,
    PITCH_MAX,
    PITCH_MIN,
    SAMPLE_RATE,
)
from ..fileio import atomic_write_bytes

__all__ = [
    "RenderSettings",
    "RenderResult",
    "SkippedPreset",
    "default_soundfont",
    "check_soundfont",
    "render_corpus",
    "note_name",
    "MANIFEST_NAME",
]

MANIFEST_NAME = "notono_corpus.json"
MANIFEST_FORMAT = "notono-corpus"
MANIFEST_VERSION = 1
SOURCE_STR = "synthetic"
SOURCE_INDEX = 2  # NSynth: 0 acoustic, 1 electronic, 2 synthetic
NSYNTH_QUALITIES = 10  # bright, dark, distortion, fast_decay, long_release, multiphonic,
                       # nonlinear_env, percussive, reverb, tempo-synced: not labelled here
SILENCE_PEAK = 1e-4     # a note whose raw peak stays below -80 dBFS counts as silent
# tinysoundfont interpolates samples linearly; rendered straight at 16 kHz that aliases (up to 10 % of a
# bright note's energy lands just below 8 kHz, where the image drops the Nyquist bin). Rendering at
# 3 × 16 kHz and decimating with soxr's band-limited filter keeps the corpus clean.
OVERSAMPLING = 3
RENDER_SAMPLE_RATE = OVERSAMPLING * SAMPLE_RATE
HOLD_SAMPLES = int(round(NOTE_HOLD_S * SAMPLE_RATE))
FLUSH_BLOCK = 4096      # samples rendered after cutting a note, until the synth is fully silent


@dataclass(frozen=True)
class RenderSettings:
    """What to render; every field is recorded in the corpus manifest.

    Args:
        pitches: MIDI pitches (default 24–84, the model's range, as NOTONO kept from NSynth).
        velocities: MIDI velocities (default 100, one velocity per note).
        families: NSynth families to render (default all 11).
        programs_per_family: render only the first N GM programs of each family (None: all; small
            values make quick test corpora).
        peak_dbfs: each preset's loudest note is scaled to this peak (-1 dBFS).
        max_gain_db: cap on that per-preset gain so near-silent presets are not blown up.
    """

    pitches: tuple[int, ...] = tuple(range(PITCH_MIN, PITCH_MAX + 1))
    velocities: tuple[int, ...] = (100,)
    families: tuple[str, ...] = FAMILIES
    programs_per_family: int | None = None
    peak_dbfs: float = -1.0
    max_gain_db: float = 40.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "pitches", tuple(int(p) for p in self.pitches))
        object.__setattr__(self, "velocities", tuple(int(v) for v in self.velocities))
        object.__setattr__(self, "families", tuple(self.families))
        if not self.pitches:
            raise ValueError("no pitches to render")
        if not self.velocities:
            raise ValueError("no velocities to render")
        bad = [p for p in self.pitches if not 0 <= p <= 127]
        if bad:
            raise ValueError(f"pitches must be MIDI notes 0-127, got {bad}")
        bad = [v for v in self.velocities if not 1 <= v <= 127]
        if bad:
            raise ValueError(f"velocities must be 1-127, got {bad}")
        bad = [f for f in self.families if f not in FAMILIES]
        if bad:
            raise ValueError(f"unknown instrument families {bad}; expected names from {', '.join(FAMILIES)}")
        if len(set(self.pitches)) != len(self.pitches) or len(set(self.velocities)) != len(self.velocities):
            raise ValueError("pitches and velocities must not repeat")
        if self.programs_per_family is not None and self.programs_per_family < 1:
            raise ValueError(f"programs_per_family must be at least 1, got {self.programs_per_family}")

    def programs(self, family: str) -> tuple[int, ...]:
        programs = GM_PROGRAMS_BY_FAMILY[family]
        return programs if self.programs_per_family is None else programs[: self.programs_per_family]


@dataclass(frozen=True)
class SkippedPreset:
    """A SoundFont preset that produced no notes, and why."""

    soundfont: str
    family: str
    program: int
    reason: str


@dataclass
class RenderResult:
    """What a render did."""

    out_dir: Path
    notes_written: int
    notes_kept: int                                  # already on disk from an earlier run (resume)
    skipped_presets: list[SkippedPreset] = field(default_factory=list)
    silent_notes: list[str] = field(default_factory=list)
    counts: dict[str, dict[int, int]] = field(default_factory=dict)   # family -> pitch -> notes
    instruments: dict[str, int] = field(default_factory=dict)         # family -> presets rendered
    seconds: float = 0.0

    @property
    def total_notes(self) -> int:
        return sum(sum(by_pitch.values()) for by_pitch in self.counts.values())

    def summary(self) -> str:
        """Counts per family × pitch (pitches grouped by octave) and everything skipped."""
        pitches = sorted({p for by_pitch in self.counts.values() for p in by_pitch})
        lines = [f"corpus {self.out_dir}: {self.total_notes} notes ({self.notes_written} written, "
                 f"{self.notes_kept} kept from an earlier run) in {self.seconds:.1f} s"]
        if pitches:
            bins = [(lo, min(lo + 11, pitches[-1])) for lo in range(pitches[0], pitches[-1] + 1, 12)]
            header = f"{'family':<11}{'instr':>6}{'notes':>7}  " + "".join(f"{f'{a}-{b}':>8}" for a, b in bins)
            lines += ["notes per family × pitch range:", header]
            for family in FAMILIES:
                by_pitch = self.counts.get(family)
                if by_pitch is None:
                    continue
                cells = "".join(f"{sum(by_pitch.get(p, 0) for p in range(a, b + 1)):>8}" for a, b in bins)
                lines.append(f"{family:<11}{self.instruments.get(family, 0):>6}{sum(by_pitch.values()):>7}  {cells}")
                per_pitch = [by_pitch.get(p, 0) for p in pitches]
                empty = [p for p in pitches if by_pitch.get(p, 0) == 0]
                if empty or min(per_pitch) != max(per_pitch):
                    lines.append(f"{'':<11}  per pitch {min(per_pitch)}-{max(per_pitch)}"
                                 + (f", no notes at pitches {empty}" if empty else ""))
        for skipped in self.skipped_presets:
            lines.append(f"skipped {skipped.family} program {skipped.program} of {skipped.soundfont}: {skipped.reason}")
        if self.silent_notes:
            shown = ", ".join(self.silent_notes[:10]) + (" …" if len(self.silent_notes) > 10 else "")
            lines.append(f"skipped {len(self.silent_notes)} silent notes: {shown}")
        return "\n".join(lines)


def default_soundfont() -> Path:
    """TimGM6mb.sf2, the GM SoundFont that the pretty_midi package ships."""
    resource = importlib.resources.files("pretty_midi") / "TimGM6mb.sf2"
    path = Path(str(resource))
    if not path.is_file():
        raise FileNotFoundError(f"the default SoundFont TimGM6mb.sf2 is missing from the pretty_midi package "
                                f"(looked at {path}); pass --soundfont PATH")
    return path


def check_soundfont(path: str | os.PathLike) -> Path:
    """Return the path if it names a readable SoundFont (RIFF 'sfbk'), else raise naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"SoundFont not found: {path}")
    if not path.is_file():
        raise ValueError(f"SoundFont path {path} is not a file")
    with open(path, "rb") as handle:
        header = handle.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"sfbk":
        raise ValueError(f"{path} is not a SoundFont: it lacks the RIFF 'sfbk' header of .sf2/.sf3 files")
    return path


def note_name(family: str, instrument_number: int, pitch: int, velocity: int) -> str:
    """NSynth-style note name, e.g. ``bass_synthetic_003-036-100``."""
    return f"{family}_{SOURCE_STR}_{instrument_number:03d}-{pitch:03d}-{velocity:03d}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json_atomic(path: Path, data: object, indent: int | None = 1) -> None:
    text = json.dumps(data, indent=indent, sort_keys=True) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


class _PresetRenderer:
    """One SoundFont loaded in tinysoundfont, rendering single notes from a silent start."""

    def __init__(self, path: Path) -> None:
        import tinysoundfont  # the renderer; installed with --no-deps (its pyaudio dependency is unused)

        self.path = path
        self.synth = tinysoundfont.Synth(samplerate=RENDER_SAMPLE_RATE)
        try:
            self.sfid = self.synth.sfload(str(path))
        except Exception as error:  # tinysoundfont raises its own exception types on corrupt files
            raise ValueError(f"{path} could not be loaded as a SoundFont: {error}") from None

    def has_preset(self, program: int) -> bool:
        try:
            return self.synth.sfpreset_name(self.sfid, 0, program) is not None
        except RuntimeError:
            return False

    def render(self, program: int, pitch: int, velocity: int) -> np.ndarray:
        """Mono float32 [64000] at 16 kHz: key down for 3 s, then 1 s of release."""
        import soxr

        synth = self.synth
        synth.program_select(0, self.sfid, 0, program)
        synth.noteon(0, pitch, velocity)
        held = np.frombuffer(synth.generate(HOLD_SAMPLES * OVERSAMPLING), dtype=np.float32)
        synth.noteoff(0, pitch)
        released = np.frombuffer(synth.generate((NUM_SAMPLES - HOLD_SAMPLES) * OVERSAMPLING), dtype=np.float32)
        stereo = np.concatenate([held, released]).reshape(-1, 2)
        # Cut the tail and render until the fade-out is over, so the next note starts from silence.
        synth.sounds_off()
        for _ in range(16):
            if not np.any(np.frombuffer(synth.generate(FLUSH_BLOCK), dtype=np.float32)):
                break
        mono = stereo.mean(axis=1, dtype=np.float32)
        return fit_length(soxr.resample(mono, RENDER_SAMPLE_RATE, SAMPLE_RATE, quality="HQ").astype(np.float32))


def _plan_manifest(soundfonts: Sequence[Path], settings: RenderSettings) -> dict:
    # Round-tripped through JSON so it compares equal to the copy read back from disk (tuples -> lists).
    return json.loads(json.dumps({
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "builder": f"notono-live {__version__}",   # informative only: resuming compares "settings"
        "settings": {
            "soundfonts": [{"name": p.name, "sha256": _sha256(p), "bytes": p.stat().st_size} for p in soundfonts],
            "render": asdict(settings),
            "sample_rate": SAMPLE_RATE,
            "num_samples": NUM_SAMPLES,
            "hold_samples": HOLD_SAMPLES,
            "render_sample_rate": RENDER_SAMPLE_RATE,
            "renderer": "tinysoundfont",
        },
    }))


def _check_out_dir(out_dir: Path, manifest: dict) -> bool:
    """Return True when out_dir holds an earlier run of the same corpus (resume); refuse others."""
    if not out_dir.exists():
        return False
    if not out_dir.is_dir():
        raise ValueError(f"output path {out_dir} exists and is not a folder")
    manifest_path = out_dir / MANIFEST_NAME
    if manifest_path.is_file():
        try:
            existing = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"{manifest_path} is unreadable ({error}); refusing to write into {out_dir}") from None
        if existing.get("settings") != manifest["settings"]:
            old, new = existing.get("settings", {}), manifest["settings"]
            differing = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ValueError(f"{out_dir} already holds a different corpus (its {MANIFEST_NAME} differs in "
                             f"{', '.join(differing) or 'format'}); choose another --out folder")
        return True
    if any(out_dir.iterdir()):
        raise ValueError(f"{out_dir} is not empty and holds no {MANIFEST_NAME}: it is not a corpus written by "
                         f"this builder; choose an empty or new --out folder")
    return False


def render_corpus(soundfonts: Sequence[str | os.PathLike] | None, out_dir: str | os.PathLike,
                  settings: RenderSettings | None = None, progress: bool = True) -> RenderResult:
    """Render an NSynth-layout corpus into ``out_dir`` and return what was done.

    Args:
        soundfonts: SoundFont paths, in order (their order fixes instrument numbers); None or empty
            uses `default_soundfont()`.
        out_dir: corpus folder; created if needed. A folder holding an earlier run with the same
            SoundFonts and settings is resumed; anything else is refused.
        settings: what to render (default: all 11 families, pitches 24–84, velocity 100).
        progress: show a tqdm progress bar on stderr.

    Raises:
        FileNotFoundError: a SoundFont does not exist.
        ValueError: a file is not a SoundFont, a setting is invalid, or out_dir holds another corpus.
    """
    started = time.perf_counter()
    settings = settings or RenderSettings()
    paths = [check_soundfont(p) for p in (soundfonts or [default_soundfont()])]
    if len({p.resolve() for p in paths}) != len(paths):
        raise ValueError(f"a SoundFont is given twice: {[str(p) for p in paths]}")
    renderers = [_PresetRenderer(p) for p in paths]        # loads (and validates) before writing anything
    out_dir = Path(out_dir)
    manifest = _plan_manifest(paths, settings)
    resuming = _check_out_dir(out_dir, manifest)

    audio_dir = out_dir / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    if not resuming:
        _write_json_atomic(out_dir / MANIFEST_NAME, manifest)

    result = RenderResult(out_dir=out_dir, notes_written=0, notes_kept=0)
    examples: dict[str, dict] = {}
    presets = [(sf_index, family, program) for sf_index in range(len(paths))
               for family in settings.families for program in settings.programs(family)]
    notes_per_preset = len(settings.pitches) * len(settings.velocities)
    from tqdm import tqdm

    bar = tqdm(total=len(presets) * notes_per_preset, unit="note", desc="rendering", disable=not progress)
    family_counter = {family: 0 for family in FAMILIES}
    for instrument, (sf_index, family, program) in enumerate(presets):
        # Numbers are given before skipping, so names stay stable whatever a SoundFont lacks.
        instrument_number = family_counter[family]
        family_counter[family] += 1
        renderer = renderers[sf_index]
        counts = result.counts.setdefault(family, {})
        if not renderer.has_preset(program):
            result.skipped_presets.append(SkippedPreset(paths[sf_index].name, family, program,
                                                      "preset missing from the SoundFont (bank 0)"))
            bar.update(notes_per_preset)
            continue
        notes, silent = [], []
        for pitch in settings.pitches:
            for velocity in settings.velocities:
                name = note_name(family, instrument_number, pitch, velocity)
                audio = renderer.render(program, pitch, velocity)
                peak = float(np.max(np.abs(audio)))
                if peak < SILENCE_PEAK:
                    silent.append(name)
                else:
                    notes.append((name, pitch, velocity, audio, peak))
        if not notes:
            result.skipped_presets.append(SkippedPreset(paths[sf_index].name, family, program,
                                                      "renders silence at every pitch"))
            bar.update(notes_per_preset)
            continue
        result.silent_notes.extend(silent)
        gain = min(10.0 ** (settings.peak_dbfs / 20.0) / max(n[4] for n in notes),
                   10.0 ** (settings.max_gain_db / 20.0))
        instrument_str = f"{family}_{SOURCE_STR}_{instrument_number:03d}"
        for name, pitch, velocity, audio, _ in notes:
            wav_path = audio_dir / f"{name}.wav"
            if resuming and wav_path.is_file():
                result.notes_kept += 1
            else:
                write_wav_atomic(wav_path, audio * gain, SAMPLE_RATE, "PCM_16")
                result.notes_written += 1
            examples[name] = {
                "note_str": name,
                "pitch": pitch,
                "velocity": velocity,
                "instrument": instrument,
                "instrument_str": instrument_str,
                "instrument_family": FAMILIES.index(family),
                "instrument_family_str": family,
                "instrument_source": SOURCE_INDEX,
                "instrument_source_str": SOURCE_STR,
                "sample_rate": SAMPLE_RATE,
                "qualities": [0] * NSYNTH_QUALITIES,
                "qualities_str": [],
            }
            counts[pitch] = counts.get(pitch, 0) + 1
        result.instruments[family] = result.instruments.get(family, 0) + 1
        bar.update(notes_per_preset)
    bar.close()

    # NSynth's integer "note" id: position in sorted name order, so it is stable across runs.
    ordered = {name: {"note": index, **examples[name]} for index, name in enumerate(sorted(examples))}
    _write_json_atomic(out_dir / "examples.json", ordered, indent=None)  # one line, as NSynth's
    result.seconds = time.perf_counter() - started
    return result
