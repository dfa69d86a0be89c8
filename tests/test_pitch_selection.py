"""Pitch-checked generation: the harmonic score on the project's own rendered notes, and the choice
`NotonoModel.generate_sounds` makes with the shipped model."""
from __future__ import annotations

import math

import numpy as np
import pytest

from notono_live import constants
from notono_live.audio_io import load_audio
from notono_live.models.pitch_selection import ON_PITCH_SCORE, best_on_pitch, first_on_pitch, harmonic_pitch_score


def _notes(corpus):
    """(family, program, pitch, path) of every rendered note of the small corpus."""
    out = []
    for path in sorted((corpus / "audio").glob("*.wav")):
        family, rest = path.stem.rsplit("_synthetic_", 1)
        program, pitch, _ = rest.split("-")
        out.append((family, program, int(pitch), path))
    return out


def test_harmonic_score_prefers_each_notes_own_pitch(small_corpus):
    """Over all 176 notes (22 GM programs × 8 pitches, 24–84), the asked pitch must beat a semitone
    above and an octave above on nearly every note (measured: 97% and 95%). Some real instruments put
    energy an octave down (the drawbar organ's sub-octave), so the octave below is not required."""
    beats_semitone = beats_octave = octave_checked = 0
    notes = _notes(small_corpus)
    for family, program, pitch, path in notes:
        audio = load_audio(path)
        own = harmonic_pitch_score(audio, pitch)
        beats_semitone += own > harmonic_pitch_score(audio, pitch + 1)
        if pitch + 12 <= constants.PITCH_MAX:
            octave_checked += 1
            beats_octave += own > harmonic_pitch_score(audio, pitch + 12)
    assert beats_semitone >= 0.9 * len(notes), f"{beats_semitone}/{len(notes)} notes beat a semitone up"
    assert beats_octave >= 0.9 * octave_checked, f"{beats_octave}/{octave_checked} notes beat an octave up"


def test_best_on_pitch_picks_the_note_played_at_the_asked_pitch(small_corpus):
    """One program played at MIDI 48, 60 and 67, asked for 60: the 60 must win for nearly every one
    of the 22 programs (measured: 21; the miss is the drawbar organ)."""
    picks = programs = 0
    by_key = {(f, p, m): path for f, p, m, path in _notes(small_corpus)}
    for family in constants.FAMILIES:
        for program in ("000", "001"):
            paths = [by_key.get((family, program, midi)) for midi in (48, 60, 67)]
            if None in paths:
                continue
            programs += 1
            chosen, scores = best_on_pitch(np.stack([load_audio(p) for p in paths]), 60)
            assert len(scores) == 3
            picks += chosen == 1
    assert programs >= 20 and picks >= programs - 2, f"picked MIDI 60 for {picks} of {programs} programs"


def kept_of(scores: list[float]) -> int:
    """What picking keeps from a group with these scores: the first on pitch, else the best."""
    on_pitch = [i for i, score in enumerate(scores) if score > ON_PITCH_SCORE]
    return on_pitch[0] if on_pitch else int(np.argmax(scores))


def test_picking_keeps_the_first_candidate_on_pitch_and_scores_no_further(small_corpus):
    """Candidates: a program at MIDI 48, then at 60 twice (two programs), asked for 60: the first
    60 is kept even where the second scores higher, and the second is not scored; asked for a pitch
    none of them plays, the best scored is kept."""
    by_key = {(f, p, m): path for f, p, m, path in _notes(small_corpus)}
    checked = 0
    for family in ("brass", "flute", "reed", "string"):
        paths = [by_key.get(key) for key in ((family, "000", 48), (family, "000", 60), (family, "001", 60))]
        if None in paths:
            continue
        audio = np.stack([load_audio(p) for p in paths])
        full = [harmonic_pitch_score(a, 60) for a in audio]
        if not (full[0] <= ON_PITCH_SCORE < full[1]):
            continue
        checked += 1
        chosen, scores = first_on_pitch(audio, 60)
        assert chosen == 1 and scores[:2] == full[:2] and math.isnan(scores[2])
        chosen, scores = first_on_pitch(audio, 54)   # a tritone away from all three
        assert chosen == kept_of(scores) and not any(math.isnan(x) for x in scores)
    assert checked >= 3


def test_silence_broken_audio_and_bad_shapes():
    assert harmonic_pitch_score(np.zeros(constants.NUM_SAMPLES, np.float32), 60) == 0.0
    broken = np.sin(np.arange(constants.NUM_SAMPLES, dtype=np.float32))
    broken[100] = np.nan
    assert harmonic_pitch_score(broken, 60) == float("-inf")
    chosen, scores = best_on_pitch(np.stack([broken, np.zeros_like(broken)]), 60)
    assert chosen == 1 and scores == [float("-inf"), 0.0]
    with pytest.raises(ValueError, match="mono audio"):
        harmonic_pitch_score(np.zeros((2, 100), np.float32), 60)
    with pytest.raises(ValueError, match="candidates must be audio"):
        best_on_pitch(np.zeros(constants.NUM_SAMPLES, np.float32), 60)


@pytest.fixture(scope="module")
def shipped():
    from notono_live.models.bundle import NotonoModel

    return NotonoModel.load()


def test_generate_sounds_on_full_decodes_keeps_each_groups_first_draw_on_pitch(shipped):
    """n × candidates draws in one seeded batch (the same draws `generate` gives for n × candidates),
    each sound its group's first draw on the asked pitch (else the best scored), with its audio."""
    sounds = shipped.generate_sounds(67, "reed", n=2, candidates=3, seed=11, pick_on="full")
    drawn = shipped.generate(67, "reed", n=6, seed=11)
    assert sounds.candidates == 3 and len(sounds.maps) == 2 and sounds.audio.shape == (2, constants.NUM_SAMPLES)
    assert sounds.drawn_audio.shape == (6, constants.NUM_SAMPLES)
    for i, kept in enumerate(sounds.kept):
        assert i * 3 <= kept < (i + 1) * 3, "a sound was taken from another sound's group"
        assert sounds.maps[i] == drawn[kept]
        group = [harmonic_pitch_score(a, 67) for a in sounds.drawn_audio[i * 3:(i + 1) * 3]]
        assert kept - i * 3 == kept_of(group)
        assert math.isclose(sounds.pitch_scores[i], group[kept - i * 3], rel_tol=1e-6)
        np.testing.assert_array_equal(sounds.audio[i], sounds.drawn_audio[kept])
    np.testing.assert_allclose(shipped.decode(sounds.maps), sounds.audio, atol=1e-5)
    # one candidate: the priors' own draws, unscored
    single = shipped.generate_sounds(67, "reed", n=2, candidates=1, seed=11)
    assert single.maps == shipped.generate(67, "reed", n=2, seed=11)
    assert all(math.isnan(s) for s in single.pitch_scores) and single.kept == [0, 1]
    for bad in (0, 9, 2.5, True):
        with pytest.raises(ValueError, match="must be a whole number in 1..8"):
            shipped.generate_sounds(67, "reed", candidates=bad)
    with pytest.raises(ValueError, match="variations must be 1-16"):
        shipped.generate_sounds(67, "reed", n=17, candidates=2)


def test_a_new_bottom_is_picked_on_pitch_and_keeps_the_top(shipped, small_corpus):
    """`regenerate_bottom_sounds`: every draw keeps the note's top map bit-for-bit, the kept bottom is
    the first draw whose sound is on the pitch, and one candidate is `regenerate_bottom` itself."""
    audio = load_audio(small_corpus / "audio" / "reed_synthetic_000-067-100.wav")
    maps = shipped.encode(audio)[0]
    sounds = shipped.regenerate_bottom_sounds(maps, 67, "reed", candidates=3, seed=4)
    drawn = shipped.regenerate_bottom(maps, 67, "reed", n=3, seed=4)
    assert len(sounds.maps) == 1 and sounds.candidates == 3 and sounds.drawn_audio.shape[0] == 3
    assert all(np.array_equal(d.top, maps.top) for d in drawn)
    scores = [harmonic_pitch_score(a, 67) for a in sounds.drawn_audio]
    assert sounds.kept == [kept_of(scores)] and sounds.maps[0] == drawn[sounds.kept[0]]
    single = shipped.regenerate_bottom_sounds(maps, 67, "reed", candidates=1, seed=4)
    assert single.maps == shipped.regenerate_bottom(maps, 67, "reed", n=1, seed=4)
    with pytest.raises(ValueError, match="do not split into groups of 2"):
        shipped.pick_on_pitch(drawn, 67, 2)


def test_many_sounds_are_drawn_in_bounded_batches_of_one_seeded_stream():
    """5 sounds × 4 candidates = 20 draws: sampled as 16 + 4 (no batch above MAX_VARIATIONS draws),
    from one seeded stream, so the second batch does not repeat the first and a seed repeats it all."""
    from notono_live.models.bundle import MAX_VARIATIONS, NotonoModel, check_candidates
    from notono_live.models.picking import draw_batches

    assert [b.stop - b.start for b in draw_batches(5, 4)] == [16, 4]
    assert all(b.stop - b.start <= MAX_VARIATIONS for b in draw_batches(16, 8))
    model = NotonoModel.untrained("tiny", seed=0)
    sounds = model.generate_sounds(60, "brass", n=5, candidates=4, seed=3)
    assert len(sounds.maps) == 5 and sounds.drawn_audio.shape[0] == 20
    assert all(i * 4 <= k < (i + 1) * 4 for i, k in enumerate(sounds.kept))
    assert not np.array_equal(sounds.drawn_audio[16], sounds.drawn_audio[0])
    again = model.generate_sounds(60, "brass", n=5, candidates=4, seed=3)
    assert again.maps == sounds.maps and again.kept == sounds.kept
    for bad in (float("nan"), float("inf"), "4"):
        with pytest.raises(ValueError, match="candidates .* must be a whole number in 1..8"):
            check_candidates(bad)
