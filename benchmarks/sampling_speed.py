"""Time KV-cached generation with a trained model folder: sampling and decoding, separately.

Usage (from the repository root, package importable): python benchmarks/sampling_speed.py MODEL_FOLDER [--runs 7] [--save tokens.npz] [--check tokens.npz] [--step-precision bfloat16] [--threads 2] [--sampling-threads 1] [--picked]

Prints median ms per generation (128 top + 512 bottom tokens), per token, and for the decode to
audio, after one warm-up. `--threads` sets torch's threads (decoding uses them); sampling uses
`--sampling-threads` (default 1, as `NotonoModel` samples). `--save`/`--check`
store or compare the codes drawn for seeds 0..runs-1, to confirm a speed change draws the same.
`--picked` times what the daemon does for one new sound instead: the model's candidates (4) drawn
in one batch under its guidance, decoded and scored on pitch (`NotonoModel.generate_sounds`).
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
    parser.add_argument("--draws", type=int, default=1, help="draws sampled together (rows: x2 under guidance)")
    parser.add_argument("--family", default="organ")
    parser.add_argument("--save")
    parser.add_argument("--check")
    parser.add_argument("--no-decode", action="store_true")
    parser.add_argument("--step-precision", default="auto", help="as serve --step-precision")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sampling-threads", type=int, default=1, help="torch threads while sampling")
    parser.add_argument("--picked", action="store_true", help="time generate_sounds (candidates, decode, score)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = NotonoModel.load(args.models)
    model.sampling_threads = args.sampling_threads
    model.set_step_precision(args.step_precision)
    if args.picked:
        model.generate_sounds(pitch=args.pitch, family=args.family, n=1, seed=1000)   # warm-up
        times = []
        for seed in range(args.runs):
            start = time.perf_counter()
            model.generate_sounds(pitch=args.pitch, family=args.family, n=1, seed=seed)
            times.append((time.perf_counter() - start) * 1000)
        print(f"generate_sounds x1 ({model.candidates} candidates, step {model.top_prior.step_precision}, "
              f"{args.threads} thread(s), {args.sampling_threads} while sampling): median {statistics.median(times):.0f} ms; "
              f"runs {', '.join(f'{t:.0f}' for t in times)}")
        return
    model.generate(pitch=args.pitch, family=args.family, n=args.draws, seed=1000)   # warm-up
    generate_ms, decode_ms, codes = [], [], []
    for seed in range(args.runs):
        start = time.perf_counter()
        maps = model.generate(pitch=args.pitch, family=args.family, n=args.draws, seed=seed)
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
