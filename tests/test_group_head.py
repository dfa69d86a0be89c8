"""Bottom priors that decode several cells per step (`PriorConfig.bottom_group`, `models.group_head`).

The factorisation must stay exact: the KV-cached sampler's logits for every cell equal the
teacher-forced pass's, the cached sampler draws what the reference sampler draws, kept cells stay
bit-for-bit, and such a prior trains, saves and loads like the others. The same holds with the
band's previous code as an input (`PriorConfig.previous_column`), with one cell per step or groups.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from notono_live.models import sampling
from notono_live.models.bundle import NotonoModel
from notono_live.models.priors import BottomPrior, PriorConfig


def grouped_prior(group: int, cross_attention: bool = False, seed: int = 0,
                  previous_column: bool = False) -> BottomPrior:
    torch.manual_seed(seed)
    config = dataclasses.replace(PriorConfig.from_size("tiny"), bottom_group=group, unconditional=True,
                                 label_layers=True, bottom_cross_attention=cross_attention,
                                 previous_column=previous_column)
    prior = BottomPrior(config).eval()
    with torch.no_grad():   # these start at zero; give them weights so that they matter here
        prior.label_modulation.weight.normal_(0, 0.2)
        if prior.group_head is not None:
            prior.group_head.earlier.weight.normal_(0, 0.3)
        if previous_column:
            prior.previous_column_embedding.weight.normal_(0, 1.0)
    return prior


def inputs(rows: int = 3, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 512, (rows, 512), generator=generator),
            torch.randint(0, 512, (rows, 128), generator=generator),
            torch.tensor([3, 20, 40][:rows]), torch.tensor([0, 5, 10][:rows]))


@pytest.mark.parametrize("group,cross_attention,previous_column",
                         [(4, False, False), (2, True, False), (4, False, True), (2, True, True), (1, True, True),
                          (1, False, True)])
def test_cached_cell_logits_equal_the_teacher_forced_pass(group, cross_attention, previous_column):
    """Also with the band's previous code as an input (`PriorConfig.previous_column`), one cell
    per step or groups."""
    prior = grouped_prior(group, cross_attention, previous_column=previous_column)
    bottom, top, pitch, family = inputs()
    with torch.inference_mode():
        forced = prior(bottom, top, pitch, family)
        condition = prior.condition(pitch, family)
        memory = prior.encode_context(top, condition)
        cache = prior.new_cache(len(bottom))
        cached = []
        for position in range(512):
            if group == 1:
                cached.append(prior.decode(bottom, cache.length, position + 1, memory, condition, cache)[:, -1])
            elif position % group == 0:
                hidden = prior.decode_hidden(bottom, cache.length, position // group + 1, memory, condition,
                                             cache)[:, -1]
            if group > 1:
                cached.append(prior.cell_logits(hidden, bottom, position))
    assert forced.shape == (3, 512, 512) and prior.decoder_length == 512 // group
    torch.testing.assert_close(torch.stack(cached, 1), forced, rtol=1e-5, atol=1e-5)


def test_a_cell_never_reads_its_own_or_later_cells():
    prior = grouped_prior(4)
    bottom, top, pitch, family = inputs()
    changed = bottom.clone()
    changed[:, 42:44] = (bottom[:, 42:44] + 7) % 512   # cells 2 and 3 of group 10
    with torch.inference_mode():
        before, after = prior(bottom, top, pitch, family), prior(changed, top, pitch, family)
    assert torch.equal(before[:, :43], after[:, :43])   # up to cell 42 itself: nothing it may not see
    assert not torch.equal(before[:, 43], after[:, 43])   # cell 43 sees cell 42 through the group head
    assert not torch.equal(before[:, 44:48], after[:, 44:48])   # the next group's step reads group 10


@pytest.mark.parametrize("group,previous_column", [(4, False), (4, True), (1, True)])
def test_the_cached_sampler_draws_what_the_reference_draws_and_keeps_the_rest(group, previous_column):
    """Also with the band's previous code as an input (`PriorConfig.previous_column`)."""
    prior = grouped_prior(group, previous_column=previous_column)
    bottom, top, pitch, family = inputs()
    resample = torch.zeros(512, dtype=torch.bool)
    resample[5:41] = True     # starts and ends inside groups
    resample[301] = True      # one cell of a group whose other cells are kept
    for guidance in (1.0, 2.0):
        options = sampling.SamplingOptions(guidance=guidance)
        cached = sampling.sample_bottom_sequence(prior, bottom, top, resample, pitch, family, options,
                                                 torch.Generator().manual_seed(3))
        reference = sampling.sample_bottom_sequence(prior, bottom, top, resample, pitch, family, options,
                                                    torch.Generator().manual_seed(3), use_cache=False)
        assert torch.equal(cached, reference)
        assert torch.equal(cached[:, ~resample], bottom[:, ~resample])
        assert not torch.equal(cached[:, resample], bottom[:, resample])


def test_a_model_with_groups_generates_saves_and_loads(tmp_path):
    model = NotonoModel.untrained("tiny")
    model.bottom_prior = grouped_prior(4).to(model.device)
    model.set_step_precision("auto")
    maps = model.generate(pitch=48, family="organ", n=2, seed=5)
    model.save(tmp_path / "model")
    loaded = NotonoModel.load(tmp_path / "model")
    assert loaded.bottom_prior.config.bottom_group == 4 and loaded.bottom_prior.group == 4
    again = NotonoModel.load(tmp_path / "model").generate(pitch=48, family="organ", n=2, seed=5)
    # fp16 weights on disk: the loaded model draws its own codes, the same ones each time it is loaded
    assert [m.bottom.tolist() for m in loaded.generate(pitch=48, family="organ", n=2, seed=5)] == \
        [m.bottom.tolist() for m in again]
    assert all(m.bottom.shape == (64, 8) for m in maps)
    with pytest.raises(ValueError, match="bottom_group"):
        PriorConfig(bottom_group=3)


def test_train_priors_with_bottom_groups_and_the_previous_column(tmp_path, small_corpus, spectrogram_cache):
    from notono_live.training.priors import PriorsTrainConfig, train_priors
    from notono_live.training.vqvae import VQVAETrainConfig, train_vqvae

    vqvae = tmp_path / "vqvae"
    train_vqvae(VQVAETrainConfig(corpus=small_corpus, out=vqvae, size="tiny", max_steps=2, batch_size=8,
                                 cache=spectrogram_cache, validation_notes=0))
    config = PriorsTrainConfig(corpus=small_corpus, vqvae=vqvae, out=tmp_path / "priors", size="tiny",
                               which="bottom", max_steps=1, batch_size=8, lr=3e-3, cache=spectrogram_cache,
                               validation_maps=8, bottom_group=4, previous_column=True)
    first = train_priors(config)
    second = train_priors(PriorsTrainConfig(**{**config.__dict__, "max_steps": 12}))
    assert second.models["bottom_prior"].config.bottom_group == 4
    assert second.models["bottom_prior"].config.previous_column
    assert second.summary.last_losses["loss/bottom"] < first.summary.last_losses["loss/bottom"] - 0.5
    assert np.isfinite(second.summary.last_losses["loss/bottom"])
