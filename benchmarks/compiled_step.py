"""The bottom prior's one-token sampling step, eager against compiled (`models.compiled_step`).

Usage (from the repository root, package importable):

    python benchmarks/compiled_step.py [--sizes shipped,small] [--rows 8,2] [--precisions float32,bfloat16]

For each prior (`shipped`: the shipped model's bottom prior; a `PriorConfig` size such as `small` or
`lite`: untrained weights of that size), row count and step precision, fills a KV cache over all
512 positions as sampling does (teacher-forced on random codes: the same arithmetic) and prints
milliseconds per token for the eager step, the seconds `torch.compile` took to build and warm the
compiled step, its milliseconds per token, and the largest difference between the two steps'
logits. Run it with the CPU otherwise idle; one torch thread, as the daemon samples.
"""
from __future__ import annotations

import argparse
import time

import torch

from notono_live.models.bundle import NotonoModel
from notono_live.models.compiled_step import CompiledStep, warm
from notono_live.models.priors import BottomPrior, PriorConfig


def bottom_prior(size: str) -> BottomPrior:
    if size == "shipped":
        return NotonoModel.load().bottom_prior
    torch.manual_seed(0)
    config = PriorConfig(**{**PriorConfig.from_size(size).to_dict(), "unconditional": True, "label_layers": True})
    return BottomPrior(config).eval()


def per_token(prior: BottomPrior, rows: int, repeats: int = 2) -> tuple[float, torch.Tensor]:
    """Best milliseconds per token over `repeats` passes over the 512 positions, and the logits."""
    condition = prior.condition(torch.full((rows,), 36), torch.full((rows,), 3))
    memory = prior.encode_context(torch.randint(0, 512, (rows, 128), generator=torch.Generator().manual_seed(1)),
                                  condition)
    sequence = torch.randint(0, 512, (rows, 512), generator=torch.Generator().manual_seed(2))
    best, logits = float("inf"), None
    for _ in range(repeats):
        cache = prior.new_cache(rows)
        out = [prior.decode(sequence, 0, 1, memory, condition, cache)[:, -1]]
        started = time.perf_counter()
        out += [prior.decode(sequence, p, p + 1, memory, condition, cache)[:, -1] for p in range(1, 512)]
        best = min(best, 1000 * (time.perf_counter() - started) / 511)
        logits = torch.stack(out, 1)
    return best, logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="shipped,small")
    parser.add_argument("--rows", default="8,2", help="4 candidates under guidance: 8; an edit under guidance: 2")
    parser.add_argument("--precisions", default="float32,bfloat16")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| prior | rows | step weights | eager ms/token | compile s | compiled ms/token | max logit difference |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        prior = bottom_prior(size)
        for precision in args.precisions.split(","):
            dtype = getattr(torch, precision)
            for rows in (int(r) for r in args.rows.split(",")):
                with torch.inference_mode():
                    prior.set_step_precision(None if dtype == prior.head.weight.dtype else dtype)
                    eager_ms, eager = per_token(prior, rows)
                    step = CompiledStep(prior, dtype)
                    seconds = warm(step, prior)
                    prior.compiled_step = step
                    compiled_ms, compiled = per_token(prior, rows)
                difference = (compiled - eager).abs().max().item()
                print(f"| {size} | {rows} | {precision} | {eager_ms:.2f} | {seconds:.1f} | {compiled_ms:.2f} "
                      f"| {difference:.2g} |", flush=True)


if __name__ == "__main__":
    main()
