"""The bottom prior's one-token sampling step, eager against `torch.compile`, on the shipped model.

Usage (from the repository root, package importable):

    python benchmarks/compiled_step.py [--rows 8] [--positions 200] [--threads 1]

Fills a KV cache position by position as sampling does (teacher-forced on random codes, the same
arithmetic) and prints milliseconds per token for the eager step, then the time to compile and warm
up `torch.compile(dynamic=True)` on the first 20 positions, then the compiled step's milliseconds per
token. Dynamo's recompilation warnings are part of the answer.
"""
from __future__ import annotations

import argparse
import time

import torch

from notono_live.models.bundle import NotonoModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8, help="4 candidates under guidance: 8")
    parser.add_argument("--positions", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prior = NotonoModel.load().bottom_prior
    rows = args.rows
    condition = prior.condition(torch.full((rows,), 36), torch.full((rows,), 3))
    memory = prior.encode_context(torch.randint(0, 512, (rows, 128)), condition)
    sequence = torch.randint(0, 512, (rows, 512))

    def per_token(step, positions: int) -> float:
        cache = prior.new_cache(rows)
        prior.decode(sequence, 0, 1, memory, condition, cache)   # position 0 fills the per-sequence inputs
        started = time.perf_counter()
        for position in range(1, positions):
            step(sequence, position, cache)
        return 1000 * (time.perf_counter() - started) / (positions - 1)

    with torch.inference_mode():
        per_token(prior._decode_one, args.positions)   # warm-up
        print(f"eager: {per_token(prior._decode_one, args.positions):.2f} ms/token")
        compiled = torch.compile(prior._decode_one, dynamic=True)
        started = time.perf_counter()
        per_token(compiled, 20)
        print(f"compile and the first 20 positions: {time.perf_counter() - started:.1f} s")
        print(f"compiled: {per_token(compiled, args.positions):.2f} ms/token")


if __name__ == "__main__":
    main()
