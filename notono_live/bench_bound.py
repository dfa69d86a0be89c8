"""How far each benchmarked operation is from its matrix work: the time of its matrix products alone.

`notono-live bench` runs every operation once more in its own process, with the same model, threads
and step precision as the daemon, under `torch.profiler`, and adds up the time spent inside the
matrix kernels: the linear layers (`addmm`, `mm`, oneDNN's packed `_linear_pointwise`), attention
(`bmm`, fused attention) and the VQ-VAE's convolutions. That sum is a lower bound for the operation
as it is computed: a step with no Python, no small element-wise kernels, no sampling, no inverse
STFT and no file writing would still spend it, with these kernels on this machine. The ratio of the
daemon's p50 to it says how much is left to win without changing the arithmetic; getting under it
takes fewer or cheaper products (fewer rows, a smaller prior, other kernels).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

# profiler keys of the kernels that do the matrix work (self time: nothing they call is counted twice)
MATRIX_KERNELS = frozenset({
    "aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::addbmm",
    "mkldnn::_linear_pointwise", "aten::_mkl_linear",
    "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_attention_math",
    "aten::mkldnn_convolution", "aten::_convolution", "aten::convolution_overrideable",
    "aten::_slow_conv2d_forward", "aten::slow_conv_transpose2d", "aten::_nnpack_spatial_convolution",
})


@dataclass
class MatrixTime:
    """One operation run in-process under the profiler.

    Args:
        name: the bench's operation name.
        wall_ms: the run's wall time under the profiler (the profiler adds a little).
        matrix_ms: time inside `MATRIX_KERNELS`.
        kernels: that time by kernel, ms.
    """

    name: str
    wall_ms: float
    matrix_ms: float
    kernels: dict[str, float]


def profile_matrix_time(name: str, run: Callable[[], Any]) -> MatrixTime:
    """Run `run()` once under torch.profiler and add up the self time of the matrix kernels."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        run()
        wall_ms = (time.perf_counter() - start) * 1000.0
    kernels: dict[str, float] = {}
    for event in prof.key_averages():
        if event.key in MATRIX_KERNELS:
            kernels[event.key] = kernels.get(event.key, 0.0) + event.self_cpu_time_total / 1000.0
    return MatrixTime(name, wall_ms, sum(kernels.values()), kernels)


def operation_runs(model: Any, guidance: float, source_audio: np.ndarray) -> dict[str, Callable[[], Any]]:
    """The bench's operations (`bench.measure_operations`) as calls on a `NotonoModel`, sampling and
    decoding as the daemon does (its candidates, its guidance: -1 means the daemon's default)."""
    from . import constants

    generating = model.default_guidance if guidance == -1 else guidance
    editing = model.edit_guidance if guidance == -1 else guidance
    maps = model.encode(source_audio)[0]

    def region(row: int, col: int, height: int, width: int) -> np.ndarray:
        mask = np.zeros(constants.TOP_SHAPE, dtype=bool)
        mask[row:row + height, col:col + width] = True
        return mask

    def inpaint(mask: np.ndarray) -> Callable[[], Any]:
        return lambda: model.decode(model.inpaint(maps, "top", mask, 60, "keyboard", seed=300,
                                                  guidance=editing))

    return {
        "generate x1": lambda: model.generate_sounds(55, "keyboard", n=1, seed=100, guidance=generating),
        "generate x4": lambda: model.generate_sounds(55, "organ", n=4, seed=200, guidance=generating),
        "inpaint 1 top cell": inpaint(region(5, 1, 1, 1)),
        "regenerate first 2 s": inpaint(region(0, 0, 32, 2)),
        "regenerate lowest quarter": inpaint(region(0, 0, 8, 4)),
        "keep top, new bottom": lambda: model.regenerate_bottom_sounds(maps, 60, "keyboard", seed=600,
                                                                       guidance=editing),
        "encode": lambda: model.encode(source_audio),
    }


def measure_matrix_times(model: Any, guidance: float, source_audio: np.ndarray,
                         names: list[str] | None = None) -> list[MatrixTime]:
    """Each operation once unprofiled (warm-up), then once under the profiler."""
    runs = operation_runs(model, guidance, source_audio)
    out = []
    for name in names or list(runs):
        runs[name]()
        out.append(profile_matrix_time(name, runs[name]))
    return out
