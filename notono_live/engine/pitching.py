"""Pitch in the engine: estimating a file's pitch, checking a render against its label, and moving a
sound to another pitch (sample packs, a new bottom at a new pitch).

The top map carries the pitch: a new bottom under a kept top stays at the top's pitch whatever pitch
the bottom prior is conditioned on. So `transpose` moves what carries the pitch:

1. the sound as decoded is shifted by the interval (librosa's phase-vocoder pitch shift, which keeps
   the duration), and re-encoded: its top map now carries the new pitch and the source's envelope and
   timbre;
2. under that top, `candidates - 1` new bottoms are drawn conditioned on the new pitch and the
   sound's family (`NotonoModel.regenerate_bottom`), so each pitch of a pack is the model's own
   rendering, not only a shifted copy; the re-encoded transposition itself is the first candidate;
3. the candidates are ranked by the harmonic score that picks generated sounds
   (`models.pitch_selection`), and the best-ranked one that pYIN also puts within 50 cents of the
   asked pitch is kept (pYIN's narrow search costs ~60 ms a note). If none passes, the best-ranked one
   is kept and the engine says so (`/notono/notice ... pitch_missed`).

On 20 transpositions of four corpus notes (bass, keyboard, flute, reed) by -12 to +12 semitones, the
re-encoded transposition was within 50 cents by pYIN 20 times, the best new bottom by harmonic score
16 times, and the harmonic-score pick among all five 19 times; the pYIN check takes it to 20.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..codemaps import Codemaps
from ..constants import NUM_SAMPLES, PITCH_MAX, PITCH_MIN, PITCH_TOLERANCE_CENTS, SAMPLE_RATE
from .render import note_name

ESTIMATE_FMIN_HZ = 27.5      # a semitone below MIDI 24 (32.7 Hz) and then some
ESTIMATE_FMAX_HZ = 1200.0    # a semitone above MIDI 84 (1046.5 Hz) and then some

Notice = list   # [kind, message], as stored in a version's params["notices"]


def midi_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((float(midi) - 69.0) / 12.0)


def estimate_pitch(audio: np.ndarray) -> tuple[int, float] | None:
    """The MIDI note (clamped to the model's range) nearest the median pYIN f0 of a 16 kHz note,
    and that f0 in Hz; None when pYIN finds no voiced frame."""
    from ..evaluation.pitch import estimate_f0

    f0 = estimate_f0(np.asarray(audio, dtype=np.float32), SAMPLE_RATE, ESTIMATE_FMIN_HZ, ESTIMATE_FMAX_HZ)
    if not math.isfinite(f0):
        return None
    midi = 69.0 + 12.0 * math.log2(f0 / 440.0)
    return int(min(max(round(midi), PITCH_MIN), PITCH_MAX)), f0


def pitch_miss(audio: np.ndarray, pitch: int) -> Notice | None:
    """A `pitch_missed` notice when pYIN does not put `audio` (16 kHz) within 50 cents of `pitch`
    (searching 13 semitones either side, as the eval does); None when it is on pitch."""
    from ..evaluation.pitch import SEARCH_SEMITONES, cents_between, estimate_f0

    target = midi_hz(pitch)
    span = 2.0 ** (SEARCH_SEMITONES / 12.0)
    f0 = estimate_f0(np.asarray(audio, dtype=np.float32), SAMPLE_RATE, max(target / span, 20.0), target * span)
    if math.isfinite(f0) and abs(cents_between(f0, target)) <= PITCH_TOLERANCE_CENTS:
        return None
    if not math.isfinite(f0):
        heard = f"pYIN finds no pitch within 13 semitones of {note_name(pitch)}"
    else:
        heard = f"pYIN hears {f0:.1f} Hz, {cents_between(f0, target):+.0f} cents from {note_name(pitch)}"
    return ["pitch_missed", f"not at its label's pitch: {heard} (the best of the draws still missed; "
                            f"try another seed)"]


def shift(audio: np.ndarray, semitones: int) -> np.ndarray:
    """A 16 kHz 4 s note shifted by `semitones`, same length (phase vocoder + resampling)."""
    import librosa

    audio = np.asarray(audio, dtype=np.float32)
    if semitones == 0:
        return audio
    out = librosa.effects.pitch_shift(audio, sr=SAMPLE_RATE, n_steps=float(semitones), res_type="soxr_hq")
    out = np.asarray(out, dtype=np.float32)[:NUM_SAMPLES]
    return np.pad(out, (0, NUM_SAMPLES - len(out)))


@dataclass
class Transposed:
    """What `transpose` kept: the maps, their decoded audio, how it was picked, what to tell."""

    maps: Codemaps
    audio: np.ndarray
    params: dict[str, Any]
    notices: list[Notice] = field(default_factory=list)


def transpose(model: Any, maps: Codemaps, audio: np.ndarray, from_pitch: int, to_pitch: int, family: str,
              seed: int, guidance: float, candidates: int,
              on_decoding: Callable[[], None] | None = None) -> Transposed:
    """`maps` (decoded as `audio`, at `from_pitch`) moved to `to_pitch`: see the module's docstring.
    `candidates` counts the re-encoded transposition and the new bottoms drawn under it."""
    from ..models.pitch_selection import harmonic_pitch_score

    moved = model.encode(shift(audio, to_pitch - from_pitch))[0]
    drawn = [moved]
    if candidates > 1:
        drawn += model.regenerate_bottom(moved, to_pitch, family, n=candidates - 1, seed=seed, guidance=guidance)
    if on_decoding is not None:
        on_decoding()
    decoded = model.decode(drawn)
    scores = [harmonic_pitch_score(a, to_pitch) for a in decoded]
    ranked = sorted(range(len(drawn)), key=lambda i: -scores[i])   # stable: ties keep draw order
    kept, notice = ranked[0], None
    for i in ranked:
        notice = pitch_miss(decoded[i], to_pitch)
        if notice is None:
            kept = i
            break
    params = {"transposed_from": int(from_pitch), "semitones": int(to_pitch - from_pitch),
              "candidates": len(drawn), "kept": "re-encoded transposition" if kept == 0 else f"new bottom {kept}"}
    if math.isfinite(scores[kept]):
        params["pitch_score"] = round(scores[kept], 4)
    moved_by = (f"moved {to_pitch - from_pitch:+d} semitones from {note_name(from_pitch)} to {note_name(to_pitch)}: "
                f"the top map, which carries the pitch, was re-encoded from the sound shifted there"
                if to_pitch != from_pitch else f"at the sound's own pitch, {note_name(to_pitch)}")
    notices = [["transposed", f"{moved_by}; kept: {params['kept']} of {len(drawn)} candidates"]]
    if notice is not None:
        notices.append(notice)
    return Transposed(drawn[kept], decoded[kept], params, notices)


def file_seconds(path) -> float:
    """Duration of an audio file in seconds, from its header."""
    import soundfile as sf

    info = sf.info(str(path))
    return info.frames / info.samplerate if info.samplerate else 0.0


def length_notices(seconds: float) -> list[Notice]:
    """`trimmed` or `padded` when a file is not the model's 4 s (within a millisecond)."""
    model_seconds = NUM_SAMPLES / SAMPLE_RATE
    if seconds > model_seconds + 1e-3:
        return [["trimmed", f"the file is {seconds:.2f} s long; only its first {model_seconds:.0f} s were encoded"]]
    if seconds < model_seconds - 1e-3:
        return [["padded", f"the file is {seconds:.2f} s long; silence was added after it to make "
                           f"{model_seconds:.0f} s"]]
    return []


def estimated_pitch_notice(audio: np.ndarray) -> tuple[int, Notice]:
    """The pitch to record for a file encoded without one, and the notice that says how it was found."""
    found = estimate_pitch(audio)
    if found is None:
        return 60, ["pitch_estimated", f"no pitch given and pYIN finds none in the file: recorded as "
                                       f"{note_name(60)} (MIDI 60); pass a pitch to set it"]
    pitch, f0 = found
    cents = 1200.0 * math.log2(f0 / midi_hz(pitch))
    return pitch, ["pitch_estimated", f"no pitch given: pYIN hears {f0:.1f} Hz, recorded as {note_name(pitch)} "
                                      f"(MIDI {pitch}, {cents:+.0f} cents)"]
