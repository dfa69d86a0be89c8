"""Sampling: inpainting keeps every unmasked cell, the KV cache changes nothing but the cost,
seeds reproduce, filters remove what they should, and `NotonoModel` exposes it all."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from notono_live import constants
from notono_live.codemaps import Codemaps, upsample_top_mask
from notono_live.models.priors import BottomPrior, PriorConfig, TopPrior
from notono_live.models.sampling import (SamplingOptions, filter_logits, generate_codes,
                                         grid_to_sequence, inpaint_codes, sample_logits,
                                         sequence_to_grid)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def priors():
    torch.manual_seed(0)
    config = PriorConfig.from_size("tiny")
    return TopPrior(config).eval(), BottomPrior(config).eval()


@pytest.fixture(scope="module")
def labelled_priors():
    """Priors with the labels in every layer (label_layers), the modulation made non-zero, with the
    unconditioned input for guidance and (bottom) cross-attention: every path the option touches."""
    torch.manual_seed(2)
    config = PriorConfig(**{**PriorConfig.from_size("tiny").to_dict(), "label_layers": True, "unconditional": True})
    pair = TopPrior(config).eval(), BottomPrior(config).eval()
    for prior in pair:
        with torch.no_grad():
            prior.label_modulation.weight.normal_(0, 0.3)
            prior.label_modulation.bias.normal_(0, 0.1)
    assert pair[1].decoder_layers[0].cross is not None
    return pair


@pytest.fixture(scope="module")
def model():
    from notono_live.models.bundle import NotonoModel
    return NotonoModel.untrained("tiny", seed=0)


def _labels(n, pitch=60, family="organ"):
    return (torch.full((n,), pitch - constants.PITCH_MIN), torch.full((n,), constants.family_index(family)))


def _random_maps(n, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 512, (n,) + constants.TOP_SHAPE, generator=g),
            torch.randint(0, 512, (n,) + constants.BOTTOM_SHAPE, generator=g))


# --- inpainting keeps what it must --------------------------------------------------------------

@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(layer=st.sampled_from(["top", "bottom"]),
       top_mask=arrays(bool, constants.TOP_SHAPE, elements=st.booleans()),
       bottom_mask=arrays(bool, constants.BOTTOM_SHAPE, elements=st.booleans()),
       seed=st.integers(0, 2**16))
def test_inpainting_keeps_every_unmasked_cell(priors, layer, top_mask, bottom_mask, seed):
    top_prior, bottom_prior = priors
    top, bottom = _random_maps(2, seed)
    pitch, family = _labels(2)
    new_top, new_bottom = inpaint_codes(
        top_prior, bottom_prior, top, bottom,
        top_mask if layer == "top" else None, bottom_mask if layer == "bottom" else None,
        pitch_index=pitch, family_index=family, generator=torch.Generator().manual_seed(seed))
    if layer == "top":
        resampled_top, resampled_bottom = top_mask, upsample_top_mask(top_mask)
    else:
        resampled_top, resampled_bottom = np.zeros(constants.TOP_SHAPE, bool), bottom_mask
    top_mask_t = torch.as_tensor(resampled_top)
    bottom_mask_t = torch.as_tensor(resampled_bottom)
    assert torch.equal(new_top[:, ~top_mask_t], top[:, ~top_mask_t])
    assert torch.equal(new_bottom[:, ~bottom_mask_t], bottom[:, ~bottom_mask_t])
    # the masked cells were really drawn again (an untrained prior almost never redraws the same code)
    for new, old, mask in ((new_top, top, top_mask_t), (new_bottom, bottom, bottom_mask_t)):
        if int(mask.sum()) >= 8:
            assert (new[:, mask] != old[:, mask]).float().mean() > 0.5
    assert int(new_top.min()) >= 0 and int(new_bottom.max()) < 512


def test_token_order_round_trip_matches_codemaps():
    from notono_live.codemaps import flatten
    top, bottom = _random_maps(3, 0)
    for layer, grid in (("top", top), ("bottom", bottom)):
        seq = grid_to_sequence(layer, grid)
        assert np.array_equal(seq.numpy(), flatten(layer, grid.numpy()))
        assert torch.equal(sequence_to_grid(layer, seq), grid)


# --- the KV cache: same draws, linear cost --------------------------------------------------------

def test_kv_cached_sampler_draws_what_the_reference_sampler_draws(priors):
    top_prior, bottom_prior = priors
    pitch, family = _labels(2)
    results = []
    for use_cache in (True, False):
        generated = generate_codes(top_prior, bottom_prior, pitch_index=pitch, family_index=family,
                                   generator=torch.Generator().manual_seed(7), use_cache=use_cache)
        mask = np.zeros(constants.BOTTOM_SHAPE, bool)
        mask[10:30, 2:5] = True
        inpainted = inpaint_codes(top_prior, bottom_prior, *generated, None, mask, pitch_index=pitch,
                                  family_index=family, generator=torch.Generator().manual_seed(8),
                                  use_cache=use_cache)
        results.append(generated + inpainted)
    for cached, reference in zip(*results):
        assert torch.equal(cached, reference)


@pytest.mark.parametrize("which", ["priors", "labelled_priors"])
def test_cached_decoding_gives_the_full_pass_logits(request, which):
    top_prior, bottom_prior = request.getfixturevalue(which)
    pitch, family = _labels(2)
    top, bottom = _random_maps(2, 3)
    top, bottom = grid_to_sequence("top", top), grid_to_sequence("bottom", bottom)
    keep = torch.rand(128) < 0.5
    with torch.inference_mode():
        for prior, seq, memory_fn in ((top_prior, top, lambda c: top_prior.encode_context(top, keep, c)),
                                      (bottom_prior, bottom, lambda c: bottom_prior.encode_context(top, c))):
            condition = prior.condition(pitch, family)
            memory = memory_fn(condition)
            full = prior.decode(seq, 0, seq.shape[1], memory, condition)
            cache = prior.new_cache(2)
            pieces, start = [], 0
            for end in (1, 2, 9, 10, 77, seq.shape[1]):   # single steps and chunks, as the sampler feeds them
                pieces.append(prior.decode(seq, start, end, memory, condition, cache))
                start = end
            assert torch.allclose(torch.cat(pieces, 1), full, atol=1e-4)


@pytest.mark.parametrize("dtype, rows, bound", [
    (torch.float16, 2, 1e-2),
    # bf16 products serve batches of any size (8 rows: 4 candidates under guidance); 8 bits of mantissa
    (torch.bfloat16, 8, 5e-2),
])
def test_reduced_step_weights_change_the_step_distribution_by_rounding_only(priors, dtype, rows, bound):
    top_prior, bottom_prior = priors
    pitch, family = _labels(rows)
    top, bottom = _random_maps(rows, 4)
    top, bottom = grid_to_sequence("top", top), grid_to_sequence("bottom", bottom)
    with torch.inference_mode():
        for prior, seq, memory_fn in ((top_prior, top, lambda c: top_prior.encode_context(top, torch.zeros(128, dtype=torch.bool), c)),
                                      (bottom_prior, bottom, lambda c: bottom_prior.encode_context(top, c))):
            condition = prior.condition(pitch, family)
            memory = memory_fn(condition)
            full = prior.decode(seq, 0, seq.shape[1], memory, condition)

            def stepped():
                cache = prior.new_cache(rows)
                return torch.cat([prior.decode(seq, i, i + 1, memory, condition, cache)
                                  for i in range(seq.shape[1])], 1)

            prior.set_step_precision(dtype)
            try:
                assert prior.step_precision == dtype
                half = stepped()
            finally:
                prior.set_step_precision(None)
            assert prior.step_precision == torch.float32
            assert torch.allclose(stepped(), full, atol=1e-4)   # back to the fp32 kernels
            assert not torch.equal(half, full)           # the reduced products did run ...
            total_variation = 0.5 * (half.softmax(-1) - full.softmax(-1)).abs().sum(-1)
            assert total_variation.max() < bound         # ... and moved each distribution by rounding only
            assert prior.state_dict().keys() == type(prior)(prior.config).state_dict().keys()


def test_cached_sampler_decodes_each_position_once_and_stops_after_the_last_masked_one(priors):
    top_prior, bottom_prior = priors
    counts = {"top": 0, "bottom": 0}

    def counting(prior, name):
        original = prior.decode

        def decode(sequence, start, end, *args, **kwargs):
            counts[name] += end - start
            return original(sequence, start, end, *args, **kwargs)
        return decode

    top_prior.decode = counting(top_prior, "top")
    bottom_prior.decode = counting(bottom_prior, "bottom")
    try:
        pitch, family = _labels(1)
        generate_codes(top_prior, bottom_prior, pitch_index=pitch, family_index=family)
        assert counts == {"top": 128, "bottom": 512}
        counts.update(top=0, bottom=0)
        top, bottom = _random_maps(1, 0)
        mask = np.zeros(constants.TOP_SHAPE, bool)
        mask[:8, 0] = True                       # top tokens 0..7, bottom tokens 0..31
        inpaint_codes(top_prior, bottom_prior, top, bottom, mask, None, pitch_index=pitch,
                      family_index=family)
        assert counts == {"top": 8, "bottom": 32}
    finally:
        del top_prior.decode, bottom_prior.decode


# --- seeds and filters ----------------------------------------------------------------------------

def test_seed_reproduces_and_variations_differ(priors):
    top_prior, bottom_prior = priors
    pitch, family = _labels(3)

    def run(seed):
        return generate_codes(top_prior, bottom_prior, pitch_index=pitch, family_index=family,
                              generator=torch.Generator().manual_seed(seed))

    first, again, other = run(1), run(1), run(2)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])
    assert not torch.equal(first[0][0], first[0][1])   # rows of one call are distinct variations


def test_filters_keep_the_expected_codes():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    nucleus = filter_logits(logits, SamplingOptions(top_p=0.8))
    assert torch.isfinite(nucleus).tolist() == [[True, True, False, False]]
    top2 = filter_logits(logits, SamplingOptions(top_k=2, top_p=1.0))
    assert torch.isfinite(top2).tolist() == [[True, True, False, False]]
    generator = torch.Generator().manual_seed(0)
    draws = sample_logits(logits.expand(4000, -1), SamplingOptions(top_p=0.8), generator)
    counts = torch.bincount(draws, minlength=4)
    assert counts[2:].sum() == 0
    assert abs(counts[0].item() / 4000 - 0.625) < 0.04   # renormalised 0.5 / 0.8
    cold = sample_logits(logits.expand(100, -1), SamplingOptions(temperature=0.01, top_p=1.0), generator)
    assert (cold == 0).all()
    with pytest.raises(ValueError, match="temperature"):
        SamplingOptions(temperature=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingOptions(top_p=1.5)


# --- classifier-free guidance ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def guided_priors():
    torch.manual_seed(1)
    config = PriorConfig(**{**PriorConfig.from_size("tiny").to_dict(), "unconditional": True})
    return TopPrior(config).eval(), BottomPrior(config).eval()


@pytest.mark.parametrize("which", ["guided_priors", "labelled_priors"])
def test_guided_greedy_draws_follow_the_guided_logits_of_the_full_pass(request, which):
    """Greedy guided sampling (KV cache, one token at a time) must pick, at every position, the
    argmax of u + g·(c − u) computed by teacher-forced full passes over the drawn sequence, with
    c from the labels and u from the unconditioned input."""
    top_prior, bottom_prior = request.getfixturevalue(which)
    pitch, family = torch.tensor([5, 40]), torch.tensor([2, 9])
    greedy = SamplingOptions(top_k=1, top_p=1.0, guidance=3.0)
    top, bottom = generate_codes(top_prior, bottom_prior, pitch_index=pitch, family_index=family, options=greedy)
    top_seq, bottom_seq = grid_to_sequence("top", top), grid_to_sequence("bottom", bottom)
    keep_none = torch.zeros(2, constants.TOP_TOKENS, dtype=torch.bool)
    on, off = torch.zeros(2, dtype=torch.bool), torch.ones(2, dtype=torch.bool)
    with torch.no_grad():
        for logits_of, drawn in (
                (lambda drop: top_prior(top_seq, keep_none, pitch, family, drop), top_seq),
                (lambda drop: bottom_prior(bottom_seq, top_seq, pitch, family, drop), bottom_seq)):
            conditioned, unconditioned = logits_of(on), logits_of(off)
            assert not torch.allclose(conditioned, unconditioned)
            guided = unconditioned + 3.0 * (conditioned - unconditioned)
            assert torch.equal(guided.argmax(-1), drawn)
    # guidance changed the draws: the conditioned prior alone picks other codes
    plain = generate_codes(top_prior, bottom_prior, pitch_index=pitch, family_index=family,
                           options=SamplingOptions(top_k=1, top_p=1.0))
    assert not torch.equal(plain[0], top)


def test_guided_sampling_keeps_unmasked_cells_and_matches_the_reference_sampler(guided_priors):
    top_prior, bottom_prior = guided_priors
    top, bottom = _random_maps(2, seed=5)
    top_mask = np.zeros(constants.TOP_SHAPE, dtype=bool)
    top_mask[3:9, 1:3] = True
    pitch, family = _labels(2)
    options = SamplingOptions(guidance=2.5)
    runs = [inpaint_codes(top_prior, bottom_prior, top, bottom, top_mask, None, pitch_index=pitch,
                          family_index=family, options=options, generator=torch.Generator().manual_seed(3),
                          use_cache=cache) for cache in (True, False)]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    new_top, new_bottom = runs[0]
    bottom_mask = upsample_top_mask(top_mask)
    assert torch.equal(new_top[:, ~torch.as_tensor(top_mask)], top[:, ~torch.as_tensor(top_mask)])
    assert torch.equal(new_bottom[:, ~torch.as_tensor(bottom_mask)], bottom[:, ~torch.as_tensor(bottom_mask)])
    assert not torch.equal(new_top, top)


def test_guidance_is_refused_without_an_unconditioned_input(priors, guided_priors):
    top_prior, bottom_prior = priors
    pitch, family = _labels(1)
    with pytest.raises(ValueError, match="no unconditioned input"):
        generate_codes(top_prior, bottom_prior, pitch_index=pitch, family_index=family,
                       options=SamplingOptions(guidance=2.0))
    with pytest.raises(ValueError, match="no unconditioned input"):
        top_prior.condition(pitch, family, torch.ones(1, dtype=torch.bool))
    # guidance 1 is the conditioned prior alone: no unconditioned input needed
    generate_codes(top_prior, bottom_prior, pitch_index=pitch, family_index=family,
                   options=SamplingOptions(guidance=1.0), generator=torch.Generator().manual_seed(0))
    for bad in (-0.5, 10.5, float("nan")):
        with pytest.raises(ValueError, match="guidance"):
            SamplingOptions(guidance=bad)
    # dropped rows get the unconditioned input, the others keep their labels
    guided_top = guided_priors[0]
    both = guided_top.condition(torch.tensor([3, 3]), torch.tensor([1, 1]), torch.tensor([True, False]))
    assert torch.equal(both[0], guided_top.null_condition.weight[0])
    assert torch.equal(both[1], guided_top.condition(torch.tensor([3]), torch.tensor([1]))[0])


# --- NotonoModel ----------------------------------------------------------------------------------

def test_model_generate_inpaint_regenerate(model):
    maps = model.generate(48, "bass", n=2, seed=5)
    assert len(maps) == 2 and all(isinstance(m, Codemaps) for m in maps)
    assert maps == model.generate(48, "bass", n=2, seed=5)
    mask = np.zeros(constants.BOTTOM_SHAPE, bool)
    mask[:16] = True                                   # lowest quarter of the bottom rows
    variations = model.inpaint(maps[0], "bottom", mask, 48, "bass", n=3, seed=1)
    assert len(variations) == 3
    for v in variations:
        assert np.array_equal(v.top, maps[0].top)
        assert np.array_equal(v.bottom[~mask], maps[0].bottom[~mask])
    new_bottom = model.regenerate_bottom(maps[0], 48, "bass", seed=2)[0]
    assert np.array_equal(new_bottom.top, maps[0].top)
    assert not np.array_equal(new_bottom.bottom, maps[0].bottom)
    # on CPU the cached step multiplies with fp16 weights; with the model's own precision the
    # reference sampler (no cache, fp32 full passes) is an exact oracle
    assert model.info()["step_precision"] == "float16"
    model.set_step_precision(None)
    try:
        exact = model.inpaint(maps[0], "bottom", mask, 48, "bass", n=3, seed=1)
        reference = model.inpaint(maps[0], "bottom", mask, 48, "bass", n=3, seed=1, use_cache=False)
    finally:
        model.set_step_precision("auto")
    assert reference == exact


def test_model_audio_round_trip_shapes(model):
    audio = model.decode(model.generate(60, "keyboard", n=2, seed=0))
    assert audio.shape == (2, constants.NUM_SAMPLES) and audio.dtype == np.float32
    maps = model.encode(audio)
    assert len(maps) == 2 and maps[0].top.shape == constants.TOP_SHAPE
    assert len(model.encode(audio[0])) == 1
    from notono_live.representation import MelIF
    assert model.encode_images(MelIF()(torch.from_numpy(audio))) == maps
    assert model.decode_images(maps).shape == (2, 2, 1024, 128)
    with pytest.raises(ValueError, match="64000"):
        model.encode(np.zeros(1000, np.float32))


@pytest.mark.parametrize("kwargs, message", [
    ({"pitch": 23}, "pitch 23"), ({"pitch": 85}, "pitch 85"), ({"pitch": 60.5}, "60.5"),
    ({"family": "banjo"}, "banjo"), ({"n": 0}, "variations"), ({"temperature": -1.0}, "temperature"),
    ({"top_p": 0.0}, "top_p"), ({"seed": -3}, "seed"),
])
def test_model_rejects_bad_values_by_name(model, kwargs, message):
    arguments = {"pitch": 60, "family": "organ"} | kwargs
    with pytest.raises(ValueError, match=message):
        model.generate(**arguments)


def test_model_rejects_bad_masks(model):
    maps = model.generate(60, "organ", seed=0)[0]
    with pytest.raises(ValueError, match=r"top mask must have shape \(32, 4\)"):
        model.inpaint(maps, "top", np.ones((64, 8), bool), 60, "organ")
    with pytest.raises(ValueError, match="layer 'middle'"):
        model.inpaint(maps, "middle", np.ones((32, 4), bool), 60, "organ")
    with pytest.raises(ValueError, match="boolean"):
        model.inpaint(maps, "top", np.full((32, 4), 2), 60, "organ")
    unchanged = model.inpaint(maps, "top", np.zeros((32, 4), bool), 60, "organ", n=2)
    assert unchanged == [maps, maps]


def test_warm_up_and_info(model):
    assert model.warm_up() >= 0
    info = model.info()
    assert info["size"] == "tiny" and info["parameters"]["vqvae"] > 0
    assert info["total_parameters"] == sum(info["parameters"].values())


def test_labels_in_every_layer_start_as_the_concatenation_only_prior():
    # the modulation is zero at initialisation: the same weights give the same logits with or without
    base = PriorConfig.from_size("tiny")
    pitch, family = _labels(2)
    top, bottom = _random_maps(2, 5)
    top, bottom = grid_to_sequence("top", top), grid_to_sequence("bottom", bottom)
    keep = torch.rand(2, 128) < 0.5
    outputs = []
    for label_layers in (False, True):
        config = PriorConfig(**{**base.to_dict(), "label_layers": label_layers})
        torch.manual_seed(3)
        top_prior = TopPrior(config).eval()
        torch.manual_seed(4)
        bottom_prior = BottomPrior(config).eval()
        with torch.no_grad():
            outputs.append((top_prior(top, keep, pitch, family), bottom_prior(bottom, top, pitch, family)))
    for plain, labelled in zip(*outputs):
        assert torch.equal(plain, labelled)
    # one scale and shift per pre-norm that exists: the top decoder has no cross-attention norm
    c = PriorConfig(**{**base.to_dict(), "label_layers": True})
    assert TopPrior(c).label_modulation.out_features == (2 * c.encoder_layers + 2 * c.decoder_layers) * 2 * c.d_model
    assert BottomPrior(c).label_modulation.out_features == (2 * c.encoder_layers + 3 * c.decoder_layers) * 2 * c.d_model
    # and the option survives the config's round trip (checkpoints store it)
    assert PriorConfig.from_dict(PriorConfig(**{**base.to_dict(), "label_layers": True}).to_dict()).label_layers
