"""The matrix products of the priors' KV-cached one-token step, in a chosen weight precision.

Sampling a note runs a prior's decoder step 640 times (128 top tokens, 512 bottom tokens), each a
chain of small products: one row per sequence, so 8 rows for the daemon's default of 4 candidates
under classifier-free guidance. `StepLinear` holds one `nn.Linear`'s weights for that step:

- **float32 / the model's dtype**: no copy; the step calls the layer's own kernel
  (`F.linear`), which gives the same floats as the full teacher-forced pass, so the KV-cached sampler
  draws exactly what the reference sampler draws.
- **bfloat16**: bf16 copies of the weights. On a CPU whose oneDNN supports bf16 (AVX512_BF16 or
  AMX on x86, bf16 on recent Arm), the copy is *pre-packed* once into oneDNN's blocked layout
  (`torch.ops.mkldnn._reorder_linear_weight`), so no call re-lays the weights out. The packed
  product gives bit-identical results to `F.linear` on the same bf16 values (a test checks it at
  1 to 32 rows), at about two thirds of its time (`python benchmarks/step_kernels.py`).
- **float16**: fp16 copies through `F.linear`. CPUs have no fast fp16 matrix-matrix kernel, so
  fp16 serves batches of at most `FP16_MAX_ROWS` rows and larger ones use the exact kernel.

Activations stay in the model's dtype between products: only a product's input is rounded to the
step dtype, and its output is cast back. The copies are not parameters (training and `state_dict`
never see them); after the weights change or the model moves, build them again.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# fp16 products lose to fp32 from about 8 rows on a CPU (no fp16 GEMM there); measured on the
# 2-core AVX-512 development CPU: 3× faster at 1 row, even at 4, slower at 8
FP16_MAX_ROWS = 4

# the row count oneDNN lays the packed weights out for: the daemon's default step (4 candidates ×
# 2 for guidance); other row counts use the same packed weights correctly
PACKING_ROWS = 8


def packed_bf16_available(device: torch.device) -> bool:
    """Whether bf16 step weights can be pre-packed for oneDNN on `device` (CPU only)."""
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):   # a torch build without the oneDNN ops
        return False


def _packed_or_none(weight: Tensor, bias: Tensor | None) -> Tensor | None:
    """`weight` packed for oneDNN, after one trial product; None where this build or CPU cannot run
    it (the plain bf16 kernel is then used: slower, same floats)."""
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, PACKING_ROWS)
        torch.ops.mkldnn._linear_pointwise(weight.new_zeros(1, weight.shape[1]), packed, bias, "none", [], "")
    except (RuntimeError, AttributeError, NotImplementedError):
        return None
    return packed


class StepLinear:
    """One linear layer of the one-token step, with its weights in `dtype` (see the module doc).

    Args:
        linear: the layer; its parameters are read once, here.
        dtype: the step's weight dtype (float32 or the layer's own: the layer's kernel as is).
        pack: whether to pre-pack bf16 weights for oneDNN (default: when `packed_bf16_available`).
    """

    __slots__ = ("linear", "dtype", "weight", "bias", "packed", "max_rows")

    def __init__(self, linear: nn.Linear, dtype: torch.dtype, pack: bool | None = None) -> None:
        self.linear = linear
        self.dtype = dtype
        self.weight: Tensor | None = None
        self.bias: Tensor | None = None
        self.packed: Tensor | None = None
        self.max_rows: int | None = None   # larger batches use the layer's own kernel
        if dtype == linear.weight.dtype:
            return
        self.weight = linear.weight.detach().to(dtype)
        self.bias = None if linear.bias is None else linear.bias.detach().to(dtype)
        if dtype == torch.float16:
            self.max_rows = FP16_MAX_ROWS
        if dtype == torch.bfloat16 and (packed_bf16_available(self.weight.device) if pack is None else pack):
            self.packed = _packed_or_none(self.weight, self.bias)

    def __call__(self, x: Tensor) -> Tensor:
        """x [rows, in] in the model's dtype -> [rows, out] in the same dtype."""
        if self.weight is None or (self.max_rows is not None and x.shape[0] > self.max_rows):
            return F.linear(x, self.linear.weight, self.linear.bias)
        if self.packed is not None:
            y = torch.ops.mkldnn._linear_pointwise(x.to(self.dtype), self.packed, self.bias, "none", [], "")
        else:
            y = F.linear(x.to(self.dtype), self.weight, self.bias)
        return y.to(x.dtype)
