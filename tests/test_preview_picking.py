"""Picking among candidates on previews of their top maps (`models.picking`): every candidate's top
map is drawn and decoded alone, and only the kept one is given a bottom map. A VQ-VAE trained with
bottom dropout turns it on, and the share travels with the model through save and load."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from notono_live import constants
from notono_live.models.bundle import NotonoModel
from notono_live.models.checkpoint import CheckpointError
from notono_live.models.picking import draw_batches
from notono_live.models.pitch_selection import ON_PITCH_SCORE, harmonic_pitch_score
from notono_live.models.sampling import SamplingOptions, generate_top_codes


def _bottom_dropout_model() -> NotonoModel:
    parts = NotonoModel.untrained("tiny", seed=0)
    return NotonoModel(parts.vqvae, parts.top_prior, parts.bottom_prior, parts.stats, bottom_dropout=0.5)


def test_picking_on_previews_scores_every_top_and_gives_only_the_kept_one_a_bottom():
    model = NotonoModel.untrained("tiny", seed=0)
    assert model.pick_on == "full"   # this decoder never learned to rebuild a note from top codes alone
    n, candidates = 5, 4             # 20 tops, drawn as 16 + 4 from one seeded stream
    sounds = model.generate_sounds(60, "brass", n=n, candidates=candidates, seed=4, pick_on="previews")
    assert sounds.drawn_audio is None and sounds.first_draws is None
    assert sounds.previews.shape == (n * candidates, constants.NUM_SAMPLES)
    assert sounds.audio.shape == (n, constants.NUM_SAMPLES) and len(sounds.maps) == n
    # the tops the stream gives, drawn again here: the one each sound kept is its map's top
    generator = torch.Generator().manual_seed(4)
    rows = torch.full((n * candidates,), 60 - constants.PITCH_MIN)
    families = torch.full((n * candidates,), constants.family_index("brass"))
    options = SamplingOptions(1.0, 0, 0.8, model.default_guidance)
    tops = torch.cat([generate_top_codes(model.top_prior, pitch_index=rows[batch], family_index=families[batch],
                                         options=options, generator=generator)
                      for batch in draw_batches(n, candidates)]).numpy()
    for i, kept in enumerate(sounds.kept):
        group = sounds.previews[i * candidates:(i + 1) * candidates]
        scores = [harmonic_pitch_score(preview, 60) for preview in group]
        on_pitch = [j for j, score in enumerate(scores) if score > ON_PITCH_SCORE]
        expected = on_pitch[0] if on_pitch else int(np.argmax(scores))   # the first on pitch, else the best
        assert kept == i * candidates + expected and sounds.pitch_scores[i] == pytest.approx(scores[expected])
        assert np.array_equal(sounds.maps[i].top, tops[kept])
        # the kept sound is the kept preview's top map under a bottom map of its own, decoded whole
        np.testing.assert_allclose(model.decode_top(tops[kept][None])[0], sounds.previews[kept], atol=1e-4)
        np.testing.assert_allclose(model.decode([sounds.maps[i]])[0], sounds.audio[i], atol=1e-4)
    assert len({m.bottom.tobytes() for m in sounds.maps}) == n   # each kept top got a bottom of its own
    again = model.generate_sounds(60, "brass", n=n, candidates=candidates, seed=4, pick_on="previews")
    assert again.maps == sounds.maps and again.kept == sounds.kept
    # one candidate has nothing to pick: the priors' draw, as on full decodes
    single = model.generate_sounds(60, "brass", n=1, candidates=1, seed=4, pick_on="previews")
    assert single.maps == model.generate(60, "brass", n=1, seed=4) and single.previews is None


def test_decode_top_refuses_what_is_not_a_top_map():
    model = NotonoModel.untrained("tiny", seed=0)
    assert model.decode_top(np.zeros((2,) + constants.TOP_SHAPE, dtype=np.int64)).shape == (2, constants.NUM_SAMPLES)
    with pytest.raises(ValueError, match=r"top maps must be \[N >= 1, 32, 4\], got \(2, 4, 32\)"):
        model.decode_top(np.zeros((2, 4, 32), dtype=np.int64))
    with pytest.raises(ValueError, match="top codes must be whole numbers in 0..511"):
        model.decode_top(np.full((1,) + constants.TOP_SHAPE, 512, dtype=np.int64))
    with pytest.raises(ValueError, match="pick_on 'top' must be one of full, previews"):
        model.generate_sounds(60, "brass", candidates=2, pick_on="top")


def test_a_bottom_dropout_model_picks_on_previews_and_keeps_its_share_through_save_and_load(tmp_path):
    parts = NotonoModel.untrained("tiny", seed=0)
    model = _bottom_dropout_model()
    assert model.pick_on == "previews"
    model.save(tmp_path / "model")
    loaded = NotonoModel.load(tmp_path / "model")
    assert loaded.bottom_dropout == 0.5 and loaded.info()["pick_on"] == "previews"
    sounds = loaded.generate_sounds(60, "brass", n=1, candidates=2, seed=1)
    assert sounds.previews.shape == (2, constants.NUM_SAMPLES)
    parts.save(tmp_path / "plain")
    assert NotonoModel.load(tmp_path / "plain").pick_on == "full"
    # a share no training can have is a corrupt checkpoint, named
    path = tmp_path / "model" / "vqvae.json"
    document = json.loads(path.read_text())
    document["metadata"]["bottom_dropout"] = 1.5
    path.write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match=r"vqvae.json: bottom_dropout 1.5 is not a share"):
        NotonoModel.load(tmp_path / "model")
    with pytest.raises(ValueError, match="bottom_dropout must be from 0 up to"):
        NotonoModel(parts.vqvae, parts.top_prior, parts.bottom_prior, parts.stats, bottom_dropout=1.0)


def test_the_daemon_engine_records_a_sound_picked_on_previews(tmp_path):
    from notono_live.engine.engine import Engine
    from notono_live.engine.store import SoundStore

    engine = Engine(_bottom_dropout_model(), SoundStore(tmp_path / "session"), tmp_path / "samples")
    record = engine.generate(60, "brass", seed=1)[0]
    assert record.params["picked_on"] == "previews" and record.params["candidates"] == 4
    # a new bottom keeps its top, which carries the pitch: there is no preview to pick on, so one draw
    bottom = engine.regenerate_bottom(record.sound, seed=2)
    assert "picked_on" not in bottom.params and bottom.params["candidates"] == 1
    assert np.array_equal(bottom.codemaps.top, record.codemaps.top)
    assert not np.array_equal(bottom.codemaps.bottom, record.codemaps.bottom)
    # what the model draws for it is the priors' first draw under that top
    again = engine.model.regenerate_bottom_sounds(record.codemaps, 60, "brass", seed=2, candidates=1)
    assert again.maps[0] == bottom.codemaps
    # candidates named for the daemon (`serve --candidates`) are drawn for a new bottom too, on full decodes
    picking = Engine(_bottom_dropout_model(), SoundStore(tmp_path / "picking"), tmp_path / "samples", candidates=4)
    first = picking.generate(60, "brass", seed=1)[0]
    assert picking.regenerate_bottom(first.sound, seed=2).params["candidates"] == 4
    full = _bottom_dropout_model()
    full.pick_on = "full"   # `serve --pick-on full`: every candidate decoded whole, new bottoms picked too
    assert full.bottom_candidates == full.candidates == 4
