"""Time the kernels of one sampling step of the lite prior: its linear layers and its attention products.

Usage (from the repository root, package importable): python benchmarks/step_kernels.py [--threads 1] [--rows 1 2 4 8 16 32]

For each row count (sequences sampled together: candidates × 2 under guidance) it prints the time of
one decoder layer's four products (qkv 256→768, out 256→256, feed-forward 256→1024→256) with fp32
weights (the layer's own kernel), fp16 weights, bf16 weights through `F.linear`, and bf16 weights
pre-packed for oneDNN (`models.step.StepLinear`). Then one layer's attention products for 8 rows
(q·Kᵀ, softmax, ·V over the KV cache) at 128, 256 and 512 cached positions with an fp32 and a bf16
cache. Each figure is the median of repeated calls on the same weights, so the weights sit in cache:
in a real step they do not, and the in-step figures (`notono-live bench`'s matrix column) are higher.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from notono_live.models.step import StepLinear, packed_bf16_available

SHAPES = ((256, 768), (256, 256), (256, 1024), (1024, 256))   # lite decoder layer: in, out


def _time_us(fn, repeats: int = 200) -> float:
    for _ in range(20):
        fn()
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats // 5):
            fn()
        samples.append((time.perf_counter() - start) / (repeats // 5) * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    packed = packed_bf16_available(torch.device("cpu"))
    print(f"torch {torch.__version__}, {args.threads} thread(s), oneDNN bf16 packing: {packed}")
    layers = [nn.Linear(i, o) for i, o in SHAPES]
    kinds = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    steps = {name: [StepLinear(layer, dtype, pack=False) for layer in layers] for name, dtype in kinds.items()}
    for step in steps["fp16"]:
        step.max_rows = None   # time fp16 at every row count, not only where the step uses it
    if packed:
        steps["bf16 packed"] = [StepLinear(layer, torch.bfloat16) for layer in layers]
    print("one decoder layer's linear products, µs:")
    print(f"  {'rows':>4} " + " ".join(f"{name:>12}" for name in steps))
    with torch.inference_mode():
        for rows in args.rows:
            inputs = [torch.randn(rows, i) for i, _ in SHAPES]
            cells = [sum(_time_us(lambda s=s, x=x: s(x)) for s, x in zip(layer_steps, inputs))
                     for layer_steps in steps.values()]
            print(f"  {rows:>4} " + " ".join(f"{c:>12.1f}" for c in cells))
        print("one layer's attention products for 8 rows (8 heads of 32), µs:")
        print(f"  {'keys':>4} {'fp32 cache':>12} {'bf16 cache':>12}")
        for length in (128, 256, 512):
            cells = []
            for dtype in (torch.float32, torch.bfloat16):
                q = torch.randn(8, 8, 1, 32, dtype=dtype)
                k, v = torch.randn(8, 8, length, 32, dtype=dtype), torch.randn(8, 8, length, 32, dtype=dtype)
                cells.append(_time_us(lambda q=q, k=k, v=v: (q @ k.transpose(-1, -2)).mul_(32 ** -0.5)
                                      .softmax(-1) @ v))
            print(f"  {length:>4} " + " ".join(f"{c:>12.1f}" for c in cells))


if __name__ == "__main__":
    main()
