"""The sampling step's matrix products (`notono_live.models.step`): pre-packed bf16 weights give the same
floats as plain bf16 products, and a speed change that keeps the arithmetic draws the same codes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from notono_live.models.bundle import NotonoModel
from notono_live.models.step import FP16_MAX_ROWS, StepLinear, packed_bf16_available

MODELS = Path(__file__).resolve().parents[1] / "models"
# Codes the shipped model drew for fixed seeds before the step's products were pre-packed (the
# generator below, run on the code of that time). If a new model is shipped, record them again
# with it, from the code before the speed change being checked.
DRAWS = Path(__file__).resolve().parent / "data" / "shipped_model_draws.npz"
PACKED = packed_bf16_available(torch.device("cpu"))


def _draws(model: NotonoModel, precision: str) -> dict[str, np.ndarray]:
    model.set_step_precision(precision)
    maps = model.generate(pitch=55, family="brass", n=4, seed=11)   # 4 draws under guidance: 8 rows
    mask = np.zeros((32, 4), dtype=bool)
    mask[8:16, 1] = True
    edited = model.inpaint(maps[0], "top", mask, pitch=55, family="brass", n=1, seed=12)[0]   # one row
    return {f"generate_{precision}_top": np.stack([m.top for m in maps]),
            f"generate_{precision}_bottom": np.stack([m.bottom for m in maps]),
            f"inpaint_{precision}_top": edited.top, f"inpaint_{precision}_bottom": edited.bottom}


@pytest.fixture(scope="module")
def shipped():
    return NotonoModel.load(MODELS)


# the bf16 draws were recorded on a CPU whose oneDNN has bf16 kernels (AVX512_BF16); a CPU without
# them multiplies bf16 through another kernel that rounds differently (seen on an AVX2-only CPU)
@pytest.mark.parametrize("precision", ["float32", pytest.param("bfloat16", marks=pytest.mark.skipif(
    not PACKED, reason="bf16 draws recorded with oneDNN's bf16 kernels, which this CPU lacks")), "auto"])
def test_the_same_seed_draws_the_recorded_codes(shipped, precision, one_torch_thread):
    recorded = np.load(DRAWS)
    if f"generate_{precision}_top" not in recorded:   # recorded on a CPU without them (bf16: see above)
        pytest.skip(f"no {precision} draws were recorded for the shipped model")
    drawn = _draws(shipped, precision)
    try:
        for key, codes in drawn.items():
            assert np.array_equal(codes, recorded[key]), f"{key}: the draws changed"
    finally:
        shipped.set_step_precision("auto")


@pytest.mark.skipif(not PACKED, reason="this CPU's oneDNN has no bf16 kernels")
@pytest.mark.parametrize("rows", [1, 2, 3, 8, 16, 32])
def test_packed_bf16_products_equal_plain_bf16_products(rows):
    torch.manual_seed(rows)
    linear = nn.Linear(256, 1024)
    step = StepLinear(linear, torch.bfloat16)
    assert step.packed is not None
    x = torch.randn(rows, 256)
    plain = F.linear(x.bfloat16(), linear.weight.bfloat16(), linear.bias.bfloat16()).float()
    out = step(x)
    assert out.dtype == torch.float32 and out.shape == (rows, 1024)
    assert torch.equal(out, plain)
    assert not torch.equal(out, linear(x))   # the products did run in bf16


def test_unpacked_bf16_and_fp16_products_round_the_inputs_only():
    torch.manual_seed(0)
    linear = nn.Linear(64, 32)
    x = torch.randn(FP16_MAX_ROWS + 1, 64)
    unpacked = StepLinear(linear, torch.bfloat16, pack=False)
    assert unpacked.packed is None
    assert torch.equal(unpacked(x), F.linear(x.bfloat16(), linear.weight.bfloat16(), linear.bias.bfloat16()).float())
    half = StepLinear(linear, torch.float16)
    few = x[:FP16_MAX_ROWS]
    assert torch.equal(half(few), F.linear(few.half(), linear.weight.half(), linear.bias.half()).float())
    # more rows than the fp16 kernels serve well: the layer's own fp32 kernel
    assert torch.equal(half(x), linear(x))


def test_the_model_dtype_uses_the_layers_own_kernel_and_follows_its_weights():
    linear = nn.Linear(16, 8)
    step = StepLinear(linear, torch.float32)
    x = torch.randn(3, 16)
    assert step.weight is None and torch.equal(step(x), linear(x))
    with torch.no_grad():
        linear.weight.add_(1.0)   # training moved the weights: the fp32 step reads them live
    assert torch.equal(step(x), linear(x))



def test_weights_oneDNN_cannot_pack_fall_back_to_the_plain_kernel():
    from notono_live.models.step import _packed_or_none

    # fp16 weights: oneDNN's packed product refuses them on this path, so the step keeps F.linear
    assert _packed_or_none(torch.zeros(8, 4, dtype=torch.float16), None) is None
    linear = nn.Linear(4, 8)
    step = StepLinear(linear, torch.bfloat16, pack=True)
    x = torch.randn(2, 4)
    expected = F.linear(x.bfloat16(), linear.weight.bfloat16(), linear.bias.bfloat16()).float()
    assert torch.equal(step(x), expected)   # packed where it can, and the same floats either way
