"""The VQ-VAE-2, its EMA quantiser and the two priors: shapes, learning, masking and conditioning."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from notono_live import constants
from notono_live.models.priors import (BottomPrior, PriorConfig, TopPrior, prior_loss,
                                       random_keep_mask)
from notono_live.models.quantizer import EMAQuantizer
from notono_live.models.vqvae import VQVAE2, VQVAE2Config, parameter_count


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def real_images(small_corpus):
    """Normalised Mel-IF images of 4 real rendered notes (two families, two pitches)."""
    from notono_live.representation import MelIF, NormalizationStats

    names = ["keyboard_synthetic_000-048-100", "keyboard_synthetic_000-072-100",
             "organ_synthetic_000-048-100", "organ_synthetic_000-072-100"]
    audio = np.stack([soundfile.read(small_corpus / "audio" / f"{n}.wav", dtype="float32")[0]
                      for n in names])
    images = MelIF()(torch.from_numpy(audio))
    return NormalizationStats.compute(images).normalize(images)


# --- VQ-VAE-2 ------------------------------------------------------------------------------------

def test_vqvae_shapes_and_code_round_trip():
    torch.manual_seed(0)
    model = VQVAE2(VQVAE2Config.from_size("tiny"))
    x = torch.randn(2, 2, 1024, 128).clamp(-1, 1)
    out = model(x)
    assert out.reconstruction.shape == x.shape
    assert out.top_codes.shape == (2, 32, 4) and out.bottom_codes.shape == (2, 64, 8)
    assert out.top_codes.dtype == torch.long
    assert 1.0 <= float(out.top_perplexity) <= 512 and 1.0 <= float(out.bottom_perplexity) <= 512
    model.eval()
    top, bottom = model.encode_codes(x)
    assert top.shape == (2, 32, 4) and bottom.shape == (2, 64, 8)
    assert int(top.min()) >= 0 and int(bottom.max()) < 512
    with torch.no_grad():
        decoded = model.decode_codes(top, bottom)
        # decoding the codes is exactly what the eval-mode forward pass reconstructs
        assert torch.allclose(decoded, model(x).reconstruction, atol=1e-5)
    with pytest.raises(ValueError, match="1024"):
        model(torch.zeros(1, 2, 512, 128))


def test_encode_codes_never_moves_the_codebooks():
    torch.manual_seed(0)
    model = VQVAE2(VQVAE2Config.from_size("tiny")).train()
    model(torch.randn(2, 2, 1024, 128))            # initialise the codebooks from data
    before = model.quantize_top.embed.clone()
    model.encode_codes(torch.randn(2, 2, 1024, 128))
    assert torch.equal(before, model.quantize_top.embed)
    assert model.training and model.quantize_top.training


def test_vqvae_loss_falls_on_real_notes(real_images):
    torch.manual_seed(0)
    model = VQVAE2(VQVAE2Config.from_size("tiny"))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(12):
        out = model(real_images)
        loss = torch.nn.functional.mse_loss(out.reconstruction, real_images) + out.commitment_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.85 * np.mean(losses[:3]), losses


def test_reference_and_lite_sizes():
    reference = VQVAE2(VQVAE2Config.from_size("reference"))
    lite = VQVAE2(VQVAE2Config.from_size("lite"))
    # paper: about 1.8 M parameters
    assert 1.5e6 < parameter_count(reference) < 2.3e6
    assert parameter_count(lite) < parameter_count(reference)
    for model in (reference, lite):
        assert model.quantize_top.embed.shape == (512, 64)
        assert model.quantize_bottom.embed.shape == (512, 64)
    with pytest.raises(ValueError, match="huge"):
        VQVAE2Config.from_size("huge")


def test_the_small_size_is_the_lite_vqvae_with_priors_a_fifth_of_lite():
    from notono_live.models.bundle import NotonoModel

    small, lite = NotonoModel.untrained("small"), NotonoModel.untrained("lite")
    assert small.vqvae.config == lite.vqvae.config
    assert small.info()["size"] == "small" and lite.info()["size"] == "lite"
    for name in ("top_prior", "bottom_prior"):
        ratio = small.info()["parameters"][name] / lite.info()["parameters"][name]
        assert 0.1 < ratio < 0.3, f"{name}: small has {ratio:.2f} of lite's parameters"
    # untrained small priors are built as the campaign trains them: guidance and labels in every layer
    assert small.supports_guidance and small.top_prior.label_modulation is not None
    # serve compiles the sampling step by default for the small priors only, where it measured faster
    assert small.compile_pays and not lite.compile_pays
    # the pitch comb and groups of bottom cells add inputs and a head, not a size
    import dataclasses

    from notono_live.models.bundle import _size_name
    from notono_live.models.priors import BottomPrior, TopPrior

    config = dataclasses.replace(small.top_prior.config, pitch_comb=True)
    assert _size_name(small.vqvae, TopPrior(config),
                      BottomPrior(dataclasses.replace(config, bottom_group=4))) == "small"
    assert _size_name(small.vqvae, TopPrior(dataclasses.replace(config, d_model=192)), small.bottom_prior) == "custom"


# --- EMA quantiser -------------------------------------------------------------------------------

def test_quantizer_ema_moves_codes_to_their_cluster_means():
    torch.manual_seed(0)
    quantizer = EMAQuantizer(codebook_size=4, dim=2, decay=0.5, dead_code_threshold=0.0)
    centres = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0], [0.0, -3.0]])
    points = (centres.repeat(64, 1) + 0.1 * torch.randn(256, 2))
    z = points.T.reshape(1, 2, 16, 16)
    for _ in range(20):
        out = quantizer(z)
    # every centre is matched by one code
    distance = torch.cdist(centres, quantizer.embed).min(1).values
    assert distance.max() < 0.3, quantizer.embed
    assert float(out.perplexity) > 3.5
    # straight-through: the gradient reaches the input unchanged
    z = z.clone().requires_grad_(True)
    quantizer.eval()(z).quantized.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))


def test_dead_codes_are_restarted_on_encoder_outputs():
    torch.manual_seed(0)
    quantizer = EMAQuantizer(codebook_size=16, dim=2, decay=0.9, dead_code_threshold=0.5)
    z = torch.randn(1, 2, 4, 4) * 0.01 + 5.0        # a tight cluster: most codes go unused
    for _ in range(30):
        quantizer(z)
    assert int(quantizer.restarts) > 0
    # restarted codes sit on encoder outputs, not where random initialisation put them
    flat = z.permute(0, 2, 3, 1).reshape(-1, 2)
    assert torch.cdist(quantizer.embed, flat).min(1).values.max() < 0.5


def test_eval_mode_leaves_codebook_alone():
    quantizer = EMAQuantizer(codebook_size=8, dim=4).eval()
    before = quantizer.embed.clone()
    quantizer(torch.randn(2, 4, 3, 3))
    assert torch.equal(before, quantizer.embed)


# --- Priors --------------------------------------------------------------------------------------

def _tiny_priors(seed=0):
    torch.manual_seed(seed)
    config = PriorConfig.from_size("tiny")
    return TopPrior(config).eval(), BottomPrior(config).eval()


def _labels(batch):
    return torch.randint(0, constants.NUM_PITCHES, (batch,)), torch.randint(0, constants.NUM_FAMILIES, (batch,))


def test_prior_losses_fall():
    top_prior, bottom_prior = _tiny_priors()
    torch.manual_seed(1)
    # structured data: each note's codes depend on its labels, so the priors have something to learn
    pitch, family = _labels(8)
    top = (pitch[:, None] * 3 + family[:, None] * 7 + torch.arange(128) // 32) % 512
    bottom = (top.repeat_interleave(4, dim=1) + torch.arange(512) % 4) % 512
    generator = torch.Generator().manual_seed(0)
    for model, step in ((top_prior, lambda m: prior_loss(m(top, keep := random_keep_mask(8, generator=generator),
                                                           pitch, family), top, ~keep)),
                        (bottom_prior, lambda m: prior_loss(m(bottom, top, pitch, family), bottom))):
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        losses = []
        for _ in range(25):
            loss = step(model)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), (type(model).__name__, losses)


def test_top_prior_never_sees_masked_cells():
    """Logits at i depend on c_<i and the kept cells at >= i, never on a masked cell's value."""
    top_prior, _ = _tiny_priors()
    pitch, family = _labels(1)
    tokens = torch.randint(0, 512, (1, 128))
    keep = torch.rand(1, 128) < 0.5
    keep[0, 60] = False
    base = top_prior(tokens, keep, pitch, family)
    changed = tokens.clone()
    changed[0, 60] = (changed[0, 60] + 1) % 512
    after = top_prior(changed, keep, pitch, family)
    # position 60 itself and everything before it cannot tell the masked value changed
    assert torch.allclose(base[0, :61], after[0, :61], atol=1e-5)
    assert not torch.allclose(base[0, 61:], after[0, 61:])   # later positions read it as c_<i
    # a kept cell at j >= i is visible to position i through the encoder
    keep[0, 90] = True
    changed = tokens.clone()
    changed[0, 90] = (changed[0, 90] + 1) % 512
    base = top_prior(tokens, keep, pitch, family)
    after = top_prior(changed, keep, pitch, family)
    assert not torch.allclose(base[0, :90], after[0, :90])


@pytest.mark.parametrize("cross_attention", [True, False])
def test_bottom_prior_is_causal_and_reads_the_whole_top(cross_attention):
    torch.manual_seed(0)
    bottom_prior = BottomPrior(PriorConfig(**(PriorConfig.from_size("tiny").to_dict()
                                             | {"bottom_cross_attention": cross_attention}))).eval()
    pitch, family = _labels(1)
    top = torch.randint(0, 512, (1, 128))
    bottom = torch.randint(0, 512, (1, 512))
    base = bottom_prior(bottom, top, pitch, family)
    changed = bottom.clone()
    changed[0, 300] = (changed[0, 300] + 1) % 512
    after = bottom_prior(changed, top, pitch, family)
    assert torch.allclose(base[0, :301], after[0, :301], atol=1e-5)
    top_changed = top.clone()
    top_changed[0, 127] = (top_changed[0, 127] + 1) % 512
    after = bottom_prior(bottom, top_changed, pitch, family)
    assert not torch.allclose(base[0, :4], after[0, :4])   # the last top cell reaches the first bottom one


@pytest.mark.parametrize("which", ["top", "bottom"])
def test_pitch_and_family_change_the_distribution(which):
    top_prior, bottom_prior = _tiny_priors()
    top = torch.randint(0, 512, (1, 128))
    bottom = torch.randint(0, 512, (1, 512))
    keep = torch.zeros(1, 128, dtype=torch.bool)

    def logits(pitch, family):
        p, f = torch.tensor([pitch]), torch.tensor([family])
        if which == "top":
            return top_prior(top, keep, p, f)
        return bottom_prior(bottom, top, p, f)

    base = logits(36, 4)
    assert torch.allclose(base, logits(36, 4))
    # the very first prediction (read from the start symbol alone) already depends on both labels
    assert not torch.allclose(base[0, 0], logits(12, 4)[0, 0], atol=1e-4)
    assert not torch.allclose(base[0, 0], logits(36, 6)[0, 0], atol=1e-4)


def test_prior_input_validation():
    top_prior, bottom_prior = _tiny_priors()
    pitch, family = _labels(1)
    with pytest.raises(ValueError, match="top tokens"):
        top_prior(torch.zeros(1, 100, dtype=torch.long), torch.ones(1, 100, dtype=torch.bool), pitch, family)
    with pytest.raises(ValueError, match="512"):
        bottom_prior(torch.full((1, 512), 512), torch.zeros(1, 128, dtype=torch.long), pitch, family)
    with pytest.raises(ValueError, match="pitch index"):
        top_prior(torch.zeros(1, 128, dtype=torch.long), torch.ones(1, 128, dtype=torch.bool),
                  torch.tensor([61]), family)


def test_random_keep_mask_rates_vary_per_batch():
    generator = torch.Generator().manual_seed(0)
    rates = [random_keep_mask(16, generator=generator).float().mean().item() for _ in range(40)]
    assert min(rates) < 0.25 and max(rates) > 0.75


# --- DDP: identical codebooks on every rank ------------------------------------------------------

def _quantizer_rank(rank: int, world_size: int, port: int, out: str) -> None:
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size)
    try:
        torch.manual_seed(100 + rank)          # each rank draws different data and restart picks
        quantizer = EMAQuantizer(codebook_size=32, dim=4, decay=0.5, dead_code_threshold=0.3)
        for step in range(8):
            quantizer(torch.randn(2, 4, 4, 4) * (1 + rank) + step)
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in quantizer.state_dict().items()}, f"{out}/rank{rank}.safetensors")
    finally:
        dist.destroy_process_group()


def test_quantizer_keeps_ranks_identical_under_ddp(tmp_path):
    import socket

    import torch.multiprocessing as mp
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.start_processes(_quantizer_rank, args=(2, port, str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    from safetensors.torch import load_file
    states = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2)]
    assert int(states[0]["restarts"]) > 0          # dead-code restarts happened, and were shared
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
