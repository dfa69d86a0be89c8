"""`bench_bound`: the matrix-work figure that `notono-live bench` prints beside each operation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from notono_live.bench_bound import operation_runs, profile_matrix_time
from notono_live.bench import TARGETS_MS
from notono_live.models.bundle import NotonoModel


def test_only_matrix_kernels_are_counted():
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    products = profile_matrix_time("products", lambda: [a @ b for _ in range(20)])
    assert products.kernels and set(products.kernels) <= {"aten::mm", "aten::addmm"}
    assert 0 < products.matrix_ms <= products.wall_ms
    elementwise = profile_matrix_time("elementwise", lambda: [(a * b).exp().sum() for _ in range(20)])
    assert elementwise.matrix_ms == 0 and elementwise.kernels == {}


def test_every_benchmarked_operation_has_a_run_and_the_runs_do_the_model_work(rendered_wav):
    import soundfile

    model = NotonoModel.untrained("lite", seed=0)
    model.candidates = 2
    audio, rate = soundfile.read(rendered_wav, dtype="float32")
    assert rate == 16000
    runs = operation_runs(model, -1.0, audio)
    assert set(runs) == set(TARGETS_MS)
    for name in ("inpaint 1 top cell", "encode"):
        timed = profile_matrix_time(name, runs[name])
        # the VQ-VAE's convolutions at least, and for inpainting the priors' linear layers
        assert timed.matrix_ms > 0 and any("conv" in k for k in timed.kernels), timed.kernels
        if name.startswith("inpaint"):
            assert any(k in timed.kernels for k in ("aten::addmm", "mkldnn::_linear_pointwise")), timed.kernels
    edited = runs["inpaint 1 top cell"]()
    assert isinstance(edited, np.ndarray) and edited.shape == (1, 64000)


def test_bench_operations_are_checked_by_name():
    import argparse

    from notono_live.bench import _operation_name

    assert [_operation_name(n) for n in ("encode", "keep top, new bottom")] == ["encode", "keep top, new bottom"]
    with pytest.raises(argparse.ArgumentTypeError, match="'generate x2'"):
        _operation_name("generate x2")
