"""Sampling a whole map, eager against the compiled step (`models.compiled_step`).

Usage (from the repository root, package importable):

    python benchmarks/compiled_step.py [--priors shipped,small,small-g4] [--rows 4,1] [--precisions float32,bfloat16]

For each prior pair (`shipped`: the shipped model's priors; `small`: untrained priors of the size
`small`; `small-g4`: the same with groups of 4 bottom cells per step), batch (4: four candidates
under guidance, 8 decoder rows; 1: one edit under guidance, 2 rows) and step precision, samples a
whole top map and a whole bottom map from nothing, as `generate` does, and prints the milliseconds
each takes eager, the seconds `torch.compile` took to build the compiled step, the milliseconds
compiled, and whether the two drew the same codes (same seed). Run it with the CPU otherwise idle;
one torch thread, as the daemon samples.
"""
from __future__ import annotations

import argparse
import time

import torch

from notono_live.models.bundle import NotonoModel
from notono_live.models.compiled_step import CompiledStep, warm
from notono_live.models.priors import BottomPrior, PriorConfig, TopPrior
from notono_live.models.sampling import SamplingOptions, sample_bottom_sequence, sample_top_sequence


def priors(name: str) -> tuple[TopPrior, BottomPrior]:
    if name == "shipped":
        model = NotonoModel.load()
        return model.top_prior, model.bottom_prior
    size, _, group = name.partition("-g")
    torch.manual_seed(0)
    config = {**PriorConfig.from_size(size).to_dict(), "unconditional": True, "label_layers": True}
    return (TopPrior(PriorConfig(**config)).eval(),
            BottomPrior(PriorConfig(**{**config, "bottom_group": int(group or 1)})).eval())


def sample(top_prior: TopPrior, bottom_prior: BottomPrior, rows: int, repeats: int = 3
           ) -> tuple[float, float, torch.Tensor]:
    """Best milliseconds for the top map and for the bottom map over `repeats`, and the codes."""
    pitch, family = torch.full((rows,), 36), torch.full((rows,), 3)
    options = SamplingOptions(guidance=2.0)
    best_top = best_bottom = float("inf")
    for _ in range(repeats):
        generator = torch.Generator().manual_seed(7)
        started = time.perf_counter()
        top = sample_top_sequence(top_prior, torch.zeros(rows, 128, dtype=torch.long),
                                  torch.ones(128, dtype=torch.bool), pitch, family, options, generator)
        middle = time.perf_counter()
        bottom = sample_bottom_sequence(bottom_prior, torch.zeros(rows, 512, dtype=torch.long), top,
                                        torch.ones(512, dtype=torch.bool), pitch, family, options, generator)
        best_top = min(best_top, 1000 * (middle - started))
        best_bottom = min(best_bottom, 1000 * (time.perf_counter() - middle))
    return best_top, best_bottom, torch.cat([top, bottom], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--priors", default="shipped,small,small-g4")
    parser.add_argument("--rows", default="4,1", help="sequences drawn at once, before guidance doubles them")
    parser.add_argument("--precisions", default="float32,bfloat16")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| priors | rows | step weights | eager top ms | eager bottom ms | compile s | compiled top ms "
          "| compiled bottom ms | same codes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.priors.split(","):
        top_prior, bottom_prior = priors(name)
        for precision in args.precisions.split(","):
            dtype = getattr(torch, precision)
            for rows in (int(r) for r in args.rows.split(",")):
                for prior in (top_prior, bottom_prior):
                    prior.set_step_precision(None if dtype == prior.head.weight.dtype else dtype)
                eager_top, eager_bottom, eager = sample(top_prior, bottom_prior, rows)
                seconds = 0.0
                for prior in (top_prior, bottom_prior):
                    step = CompiledStep(prior, dtype)
                    seconds += warm(step, prior, ((True, min(rows, 2)),))
                    prior.compiled_step = step
                compiled_top, compiled_bottom, compiled = sample(top_prior, bottom_prior, rows)
                print(f"| {name} | {rows} | {precision} | {eager_top:.0f} | {eager_bottom:.0f} | {seconds:.1f} "
                      f"| {compiled_top:.0f} | {compiled_bottom:.0f} | {bool(torch.equal(eager, compiled))} |",
                      flush=True)


if __name__ == "__main__":
    main()
