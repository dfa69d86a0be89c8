"""What decoding one note costs with 0 to 3 decoder refinement stages (`VQVAE2Config.decoder_refine`).

Usage (from the repository root, package importable):

    python benchmarks/decoder_cost.py [--size lite] [--repeats 21] [--threads 2]

Builds a VQ-VAE-2 of the size for each refinement count (random weights: the cost does not depend
on them), in channels-last order as `NotonoModel` runs it, and prints the median time of
`decode_codes` (codes to the normalised Mel-IF image, no inversion) for one note and for four,
after three warm-up calls. Untimed by the test suite; docs/training.md quotes it.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from notono_live.constants import BOTTOM_SHAPE, TOP_SHAPE
from notono_live.models.vqvae import VQVAE2, VQVAE_SIZES, VQVAE2Config
from notono_live.training.vqvae import DECODER_MODULES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="lite", choices=VQVAE_SIZES)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"decode_codes, median of {args.repeats} after 3 warm-ups, {args.threads} threads, size {args.size}")
    print("stages  decoder parameters  1 note (ms)  4 notes (ms)")
    for stages in range(4):
        config = dataclasses.replace(VQVAE2Config.from_size(args.size), decoder_refine=stages)
        model = VQVAE2(config).eval().to(memory_format=torch.channels_last)
        parameters = sum(p.numel() for name in DECODER_MODULES if hasattr(model, name)
                         for p in getattr(model, name).parameters())
        times = []
        for notes in (1, 4):
            top = torch.randint(0, config.codebook_sizes[0], (notes, *TOP_SHAPE))
            bottom = torch.randint(0, config.codebook_sizes[1], (notes, *BOTTOM_SHAPE))
            with torch.inference_mode():
                for _ in range(3):
                    model.decode_codes(top, bottom)
                runs = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    model.decode_codes(top, bottom)
                    runs.append(time.perf_counter() - start)
            times.append(statistics.median(runs) * 1000)
        print(f"{stages:>6}  {parameters:>18,}  {times[0]:>11.1f}  {times[1]:>12.1f}")


if __name__ == "__main__":
    main()
