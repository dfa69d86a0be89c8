"""Picking each generated sound from several draws: what `NotonoModel.generate_sounds` returns, and
the two ways it picks (ours, not the paper's).

- On full decodes: every draw gets its bottom map and is decoded; each sound keeps its first draw
  that `pitch_selection.harmonic_pitch_score` puts on the asked pitch, or the best scored when none
  is (`pitch_selection.first_on_pitch`).
- On previews: only the top maps are drawn for every candidate, each decoded alone
  (`VQVAE2.decode_top`: zeros in place of the bottom vectors), and only the kept top gets a bottom
  map. That is for a VQ-VAE trained with bottom dropout (`train vqvae --bottom-dropout`), whose
  decoder learned to rebuild a note, pitch included, from its top codes alone; with any other
  decoder a preview sits nowhere in particular and the pick is about chance
  (`benchmarks/preview_pick.py`). The bottom map is four times the top map's tokens, so with 4
  candidates this draws 4 tops and 1 bottom instead of 4 of each.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..constants import MAX_VARIATIONS
from ..codemaps import Codemaps
from .pitch_selection import first_on_pitch

MAX_CANDIDATES = 8
PICK_ON = ("full", "previews")


def check_candidates(candidates) -> int:
    """`candidates` as an int if it is a whole number of draws in 1..MAX_CANDIDATES, else ValueError."""
    if (isinstance(candidates, bool) or not isinstance(candidates, (int, float, np.integer))
            or not 1 <= candidates <= MAX_CANDIDATES or int(candidates) != candidates):   # NaN fails the range
        raise ValueError(f"candidates {candidates!r} must be a whole number in 1..{MAX_CANDIDATES}")
    return int(candidates)


def check_pick_on(pick_on) -> str:
    """`pick_on` if it names a way of picking (`PICK_ON`), else ValueError."""
    if pick_on not in PICK_ON:
        raise ValueError(f"pick_on {pick_on!r} must be one of {', '.join(PICK_ON)}")
    return pick_on


@dataclasses.dataclass
class GeneratedSounds:
    """What `generate_sounds`, `regenerate_bottom_sounds` and `pick_on_pitch` of `NotonoModel`
    return: the kept sounds, in request order.

    Args:
        maps: one `Codemaps` per sound.
        pitch_scores: each kept sound's `harmonic_pitch_score` (> 0: the asked pitch explains it
            best), of its preview when picked on previews; NaN when only one candidate was drawn
            and nothing was scored.
        candidates: how many draws each sound was chosen from.
        audio: [n, 64000] float32, each kept sound decoded.
        kept: the draw each sound kept, numbered over all n × candidates draws (sound i's group
            holds draws i·candidates … (i+1)·candidates − 1; draw i·candidates is its first).
        drawn_audio: [n × candidates, 64000], every draw decoded, when picked on full decodes;
            None when picked on previews (only the kept draws were given bottoms).
        previews: [n × candidates, 64000], every draw's top map decoded alone, when picked on
            previews; else None.
    """

    maps: list[Codemaps]
    pitch_scores: list[float]
    candidates: int
    audio: np.ndarray
    kept: list[int]
    drawn_audio: np.ndarray | None = None
    previews: np.ndarray | None = None

    @property
    def first_draws(self) -> np.ndarray | None:
        """[n, 64000]: each sound's first draw decoded, when every draw was (else None)."""
        return None if self.drawn_audio is None else self.drawn_audio[::self.candidates]


def draw_batches(n: int, candidates: int) -> list[slice]:
    """The draws of each sampling batch for n sounds × candidates draws: whole groups of candidates,
    at most MAX_VARIATIONS draws a batch (the most one call drew before draws were picked)."""
    per_batch = max(1, MAX_VARIATIONS // candidates) * candidates
    total = n * candidates
    return [slice(start, min(start + per_batch, total)) for start in range(0, total, per_batch)]


def pick_groups(audio: np.ndarray, pitch: int, candidates: int) -> tuple[list[int], list[float]]:
    """For consecutive groups of `candidates` rows of `audio`, the row (numbered over all rows) kept
    for `pitch` and its score: the group's first row on pitch, else its best scored
    (`pitch_selection.first_on_pitch`)."""
    if len(audio) % candidates:
        raise ValueError(f"{len(audio)} draws do not split into groups of {candidates}")
    kept, scores = [], []
    for start in range(0, len(audio), candidates):
        best, group_scores = first_on_pitch(audio[start:start + candidates], pitch)
        kept.append(start + best)
        scores.append(group_scores[best])
    return kept, scores
