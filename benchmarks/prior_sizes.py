"""Sampling time of candidate prior sizes, for choosing the next priors inside the real-time budget.

Usage (from the repository root, package importable):

    python benchmarks/prior_sizes.py [--runs 3] [--candidates 4] [--guidance 2] [--threads 1]
        [--step-precision bfloat16] [--sizes lite,d192x3,d128x4] [--top-size d128x3] [--bottom-group 4]
        [--label-layers] [--pitch-comb] [--compile]

Times what a new sound's sampling costs the daemon with its defaults: the top and bottom priors
drawing all candidates in one batch under classifier-free guidance (2 × candidates rows), with the
KV-cached one-token step, on untrained weights of each size (the arithmetic does not depend on the
values). A size is `lite`, `reference`, or `dDxL`: d_model D, L decoder layers (and L // 2 encoder
layers, at least 1), heads D // 32, feed-forward 4 D, conditions D // 8, the lite layout otherwise.
`--top-size` keeps one size for every top prior (the sizes then vary the bottom prior alone).
`--bottom-group`, `--label-layers` and `--pitch-comb` give the priors those `train priors` options
(the model campaign's small priors use all three: `d128x3` with them is its layout), and `--compile`
samples with the compiled step as `serve` does for small priors (tens of seconds to build per size,
not timed). Decoding and pitch scoring come on top (`notono-live bench` and
benchmarks/where_time_goes.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import statistics
import time

import torch

from notono_live import constants
from notono_live.models.bundle import NotonoModel, _default_stats
from notono_live.models.priors import BottomPrior, PriorConfig, TopPrior
from notono_live.models.sampling import SamplingOptions, generate_codes
from notono_live.models.vqvae import VQVAE2, VQVAE2Config


def config_of(size: str) -> PriorConfig:
    if size in ("lite", "reference"):
        return dataclasses.replace(PriorConfig.from_size(size), unconditional=True)
    match = re.fullmatch(r"d(\d+)x(\d+)", size)
    if not match:
        raise SystemExit(f"unknown size {size!r}: lite, reference or dDxL (e.g. d192x3)")
    d, layers = int(match.group(1)), int(match.group(2))
    return dataclasses.replace(PriorConfig.from_size("lite"), d_model=d, decoder_layers=layers,
                               encoder_layers=max(1, layers // 2), heads=max(1, d // 32), feedforward=4 * d,
                               condition_dim=d // 8, unconditional=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="lite,d192x4,d192x3,d128x4,d128x3")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--step-precision", choices=("float32", "bfloat16"), default="bfloat16")
    parser.add_argument("--bottom-group", type=int, choices=(1, 2, 4), default=1)
    parser.add_argument("--label-layers", action="store_true")
    parser.add_argument("--pitch-comb", action="store_true")
    parser.add_argument("--compile", action="store_true", help="sample with the compiled step")
    parser.add_argument("--top-size", default=None, help="one size for every top prior (default: each size's own)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.step_precision == "bfloat16" else None
    pitch = torch.full((args.candidates,), 60 - constants.PITCH_MIN)
    family = torch.full((args.candidates,), constants.family_index("organ"))
    options = SamplingOptions(guidance=args.guidance)
    print(f"{args.candidates} candidates, guidance {args.guidance}, step {args.step_precision}, "
          f"{args.threads} thread(s), bottom groups of {args.bottom_group}"
          f"{', labels in every layer' if args.label_layers else ''}{', pitch comb' if args.pitch_comb else ''}"
          f"{', compiled step' if args.compile else ''}, median of {args.runs}")
    print("| size | parameters (top + bottom) | sampling ms | ms/token |\n|---|---|---|---|")
    for size in args.sizes.split(","):
        config = dataclasses.replace(config_of(size), label_layers=args.label_layers, pitch_comb=args.pitch_comb)
        top_config = dataclasses.replace(config_of(args.top_size), label_layers=args.label_layers,
                                         pitch_comb=args.pitch_comb) if args.top_size else config
        torch.manual_seed(0)
        top = TopPrior(top_config).eval()
        bottom = BottomPrior(dataclasses.replace(config, bottom_group=args.bottom_group)).eval()
        for prior in (top, bottom):
            prior.set_step_precision(dtype)
        if args.compile:   # as `serve` compiles: through the model, with its sampling threads
            model = NotonoModel(VQVAE2(VQVAE2Config.from_size("tiny")), top, bottom, _default_stats())
            model.sampling_threads = args.threads
            model.compile_sampling_step()
        parameters = sum(p.numel() for p in top.parameters()) + sum(p.numel() for p in bottom.parameters())
        times = []
        with torch.inference_mode():
            for run in range(args.runs + 1):   # the first run warms the kernels up
                started = time.perf_counter()
                generate_codes(top, bottom, pitch_index=pitch, family_index=family, options=options,
                               generator=torch.Generator().manual_seed(run))
                if run:
                    times.append(time.perf_counter() - started)
        ms = 1000 * statistics.median(times)
        tokens = constants.TOP_TOKENS + constants.BOTTOM_TOKENS
        print(f"| {size} (d{config.d_model}, {config.encoder_layers}+{config.decoder_layers} layers)"
              f"{f', top {args.top_size}' if args.top_size else ''} | "
              f"{parameters / 1e6:.1f} M | {ms:.0f} | {ms / tokens:.2f} |", flush=True)


if __name__ == "__main__":
    main()
