"""The compiled sampling step (`notono_live.models.compiled_step`, `serve --compile-step`).

Compiled in float32 it must draw exactly the codes the eager step draws for the same seeds: the
recorded draws of the shipped model, and the eager draws of priors with the labels in every layer
and cross-attention or with groups of cells (paths the shipped priors do not take); and a machine
that cannot compile must say why and go on sampling.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from notono_live.models.bundle import NotonoModel
from notono_live.models.compiled_step import CompiledStep, compiler_problem, warm
from notono_live.models.priors import BottomPrior, PriorConfig
from notono_live.models.sampling import SamplingOptions, sample_bottom_sequence

MODELS = Path(__file__).resolve().parents[1] / "models"
DRAWS = Path(__file__).resolve().parent / "data" / "shipped_model_draws.npz"

pytestmark = pytest.mark.skipif(compiler_problem() is not None,
                                reason=f"torch.compile cannot run here: {compiler_problem()}")


@pytest.fixture(scope="module")
def inductor_cache(tmp_path_factory):
    """One Inductor cache for the module, shared with the daemon it starts (the environment is
    inherited), so each graph is compiled once; restored afterwards."""
    previous = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    path = tmp_path_factory.mktemp("inductor")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
    else:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = previous


def test_the_compiled_float32_step_draws_the_recorded_codes(inductor_cache, one_torch_thread):
    model = NotonoModel.load(MODELS)
    model.set_step_precision("float32")
    names = set(model.top_prior.state_dict())
    model.compile_sampling_step()
    assert model.compiled_step and model.info()["compiled_step"] is True
    assert set(model.top_prior.state_dict()) == names, "the compiled step must not become part of the model"

    # every batch a request draws was compiled up front: none compiles while a producer waits
    with torch._dynamo.config.patch(error_on_recompile=True):
        maps = model.generate(pitch=55, family="brass", n=4, seed=11)   # 4 draws under guidance: 8 rows
        mask = np.zeros((32, 4), dtype=bool)
        mask[8:16, 1] = True
        edited = model.inpaint(maps[0], "top", mask, pitch=55, family="brass", n=1, seed=12)[0]   # one row
        model.generate(pitch=55, family="brass", n=1, seed=13, guidance=1.0)   # one row, unguided
        model.generate(pitch=55, family="brass", n=3, seed=14, guidance=1.0)   # 3 rows, unguided
        model.inpaint(maps[0], "top", mask, pitch=55, family="brass", n=1, seed=15, guidance=2.0)   # 2 rows
    recorded = np.load(DRAWS)
    assert np.array_equal(np.stack([m.top for m in maps]), recorded["generate_float32_top"])
    assert np.array_equal(np.stack([m.bottom for m in maps]), recorded["generate_float32_bottom"])
    assert np.array_equal(edited.top, recorded["inpaint_float32_top"])
    assert np.array_equal(edited.bottom, recorded["inpaint_float32_bottom"])

    model.set_step_precision("auto")   # other step weights: the compiled step no longer applies
    assert not model.compiled_step and model.top_prior.compiled_step is None


@pytest.mark.parametrize("extra", [{"bottom_cross_attention": True, "previous_column": True},
                                   {"bottom_group": 4, "pitch_comb": True, "previous_column": True}],
                         ids=["cross-attention-and-previous-column", "groups-of-4-comb-and-previous-column"])
def test_a_compiled_bottom_prior_draws_what_the_eager_one_draws(extra, inductor_cache, one_torch_thread):
    """Paths the shipped priors do not take: labels in every layer with cross-attention, and groups
    of 4 cells per step with the pitch comb, both with the band's previous code as an input; a
    whole map under guidance, a region (partial groups) without."""
    torch.manual_seed(0)
    config = PriorConfig(**{**PriorConfig.from_size("tiny").to_dict(), "label_layers": True,
                            "unconditional": True, **extra})
    prior = BottomPrior(config).eval()
    with torch.no_grad():   # the modulation starts at zero; give it weights so that it matters
        prior.label_modulation.weight.normal_(0, 0.2)
        if prior.group_head is not None:   # and the group's earlier cells (their map starts at zero)
            prior.group_head.earlier.weight.normal_(0, 0.05)
        if prior.comb is not None:
            prior.comb.weight.normal_(0, 0.2)
    top = torch.randint(0, 512, (2, 128), generator=torch.Generator().manual_seed(1))
    region = torch.zeros(512, dtype=torch.bool)
    region[37:200] = True   # starts and ends inside a group

    start = torch.randint(0, 512, (2, 512), generator=torch.Generator().manual_seed(2))

    def draws() -> list[torch.Tensor]:
        out = []
        for mask, options in ((torch.ones(512, dtype=torch.bool), SamplingOptions(guidance=2.0)),
                              (region, SamplingOptions(temperature=0.9, top_p=1.0))):
            out.append(sample_bottom_sequence(prior, start, top, mask, torch.tensor([5, 40]), torch.tensor([0, 9]),
                                              options, torch.Generator().manual_seed(3)))
        return out

    eager = draws()
    step = CompiledStep(prior, torch.float32)
    warm(step, prior, ((True, 2), (False, 2)))
    used, draw = [], step.draw
    step.draw = lambda *args: used.append(args[1]) or draw(*args)   # which positions it drew
    prior.compiled_step = step
    compiled = draws()
    for a, b in zip(eager, compiled):
        assert torch.equal(a, b)
    assert not torch.equal(compiled[1][:, 37:200], start[:, 37:200])
    group = config.bottom_group
    whole_map = list(range(1, 512 // group))   # position 0 is decoded by the general pass
    inside = list(range(40 // group if group > 1 else 38, 200 // group))   # whole groups of the region
    assert used == whole_map + inside


def test_a_machine_without_a_compiler_is_told_why_and_samples_on(tmp_path, monkeypatch):
    model = NotonoModel.load(MODELS)
    monkeypatch.setenv("PATH", str(tmp_path))   # a real search of an empty PATH
    assert "no C++ compiler" in compiler_problem()
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        model.compile_sampling_step()
    assert not model.compiled_step
    assert len(model.generate(pitch=60, family="keyboard", n=1, seed=0)) == 1


def _compiled_daemon(data_dir: Path, requests) -> tuple[list[str], list]:
    """Start a daemon that compiles its step, send `requests` (None: wait for the compiler to say
    whether it compiled) and return its stdout lines and the replies."""
    from notono_live.daemon.cli import COMPILE_FAILED, COMPILE_READY
    from notono_live.daemon.process import DaemonProcess
    from notono_live.osc.client import NotonoClient

    daemon = DaemonProcess(data_dir, ["--compile-step", "--step-precision", "float32", "--candidates", "1"]).start()
    replies = []
    try:
        with NotonoClient(daemon.host, daemon.port, timeout=300.0) as client:
            client.connect()
            for request in requests:
                if request is not None:
                    replies.append(client.request(*request, timeout=300.0))
                    assert replies[-1].ok, replies[-1].error
                    continue
                started = time.monotonic()
                while not any(COMPILE_READY in line or COMPILE_FAILED in line for line in daemon.stdout_lines):
                    assert time.monotonic() - started < 600, "the daemon never said whether it compiled"
                    assert daemon.proc.poll() is None, "the daemon died while compiling"
                    time.sleep(0.5)
                assert any(COMPILE_READY in line for line in daemon.stdout_lines), daemon.stdout_lines
    finally:
        daemon.stop()
    return list(daemon.stdout_lines), replies


def test_serve_compiles_the_step_once_ready_and_keeps_serving(inductor_cache, tmp_path):
    import soundfile as sf

    from notono_live.daemon.compiling import COMPILE_SEPARATE

    generate = ("/notono/generate", 60, "keyboard", 1.0, 0.8, 1, 5)
    # served at once, whether or not the compiler has finished; then again with the compiled step
    lines, (before, after) = _compiled_daemon(tmp_path / "data", [generate, None, generate])
    # no marker in this cache yet: the graphs were built in a separate process first
    assert any(COMPILE_SEPARATE in line for line in lines), lines
    assert list(inductor_cache.glob("notono-sampling-step-*.done"))
    # float32 compiled draws what the eager step drew: the same seed gives the same sound
    first, second = (sf.read(reply.sounds[0]["wav"])[0] for reply in (before, after))
    assert before.sounds[0]["wav"] != after.sounds[0]["wav"]
    assert np.array_equal(first, second)
    # the next start finds the marker and builds its graphs from the cache in its own process
    lines, _ = _compiled_daemon(tmp_path / "again", [None])
    assert not any(COMPILE_SEPARATE in line for line in lines), lines
