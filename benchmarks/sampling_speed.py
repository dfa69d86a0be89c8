"""Time KV-cached generation with a trained model folder: sampling and decoding, separately.

Usage (from the repository root, package importable): python benchmarks/sampling_speed.py MODEL_FOLDER [--runs 7] [--save tokens.npz] [--check tokens.npz]

Prints median ms per generation (128 top + 512 bottom tokens), per token, and for the decode to
audio, after one warm-up, with torch on one thread (as `NotonoModel` samples). `--save`/`--check`
store or compare the codes drawn for seeds 0..runs-1, to confirm a speed change draws the same.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from notono_live.models.bundle import NotonoModel

TOKENS = 128 + 512


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--pitch", type=int, default=48)
    parser.add_argument("--family", default="organ")
    parser.add_argument("--save")
    parser.add_argument("--check")
    parser.add_argument("--no-decode", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = NotonoModel.load(args.models)
    model.generate(pitch=args.pitch, family=args.family, n=1, seed=1000)   # warm-up
    generate_ms, decode_ms, codes = [], [], []
    for seed in range(args.runs):
        start = time.perf_counter()
        maps = model.generate(pitch=args.pitch, family=args.family, n=1, seed=seed)
        generate_ms.append((time.perf_counter() - start) * 1000)
        codes.append(np.concatenate([maps[0].top.ravel(), maps[0].bottom.ravel()]))
        if not args.no_decode:
            start = time.perf_counter()
            model.decode(maps)
            decode_ms.append((time.perf_counter() - start) * 1000)
    generate = statistics.median(generate_ms)
    print(f"generate: median {generate:.0f} ms ({generate / TOKENS:.2f} ms/token); "
          f"runs {', '.join(f'{t:.0f}' for t in generate_ms)}")
    if decode_ms:
        print(f"decode:   median {statistics.median(decode_ms):.0f} ms")
    codes = np.stack(codes)
    if args.save:
        np.savez(args.save, codes=codes)
    if args.check:
        reference = np.load(args.check)["codes"]
        same = np.array_equal(reference, codes)
        print(f"codes identical to {args.check}: {same}"
              + ("" if same else f" ({int((reference != codes).sum())} cells differ)"))


if __name__ == "__main__":
    main()
