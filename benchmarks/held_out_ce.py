"""Held-out cross-entropy of priors from several runs or model folders on one codes file.

`train priors` logs `validation/top` and `validation/bottom` on its own codes file's first held-out
maps. This reads any priors (a `train priors` run folder, its checkpoint folder, or an exported
model folder) on any codes file of the same VQ-VAE, so that priors trained on different corpora
are compared on the same maps:

    python benchmarks/held_out_ce.py RUN/codes.safetensors PRIORS_FOLDER... [--which bottom] [--maps 256]

Two figures per folder, in nats per cell: on the first MAPS held-out maps (what the training log
reads; the held-out split is in corpus order, so those come from the first families) and on MAPS
maps spread evenly over the whole held-out split. A prior with an unconditioned input also gets its
cross-entropy without the labels.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from notono_live.training import common, modelio
from notono_live.training.priors import CodeSet, evaluate_priors, load_codes


def _subset(codes: CodeSet, index: torch.Tensor) -> CodeSet:
    return CodeSet(codes.top[index], codes.bottom[index], codes.pitch[index], codes.family[index])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("codes", type=Path, help="a codes.safetensors written by `train priors`")
    parser.add_argument("priors", type=Path, nargs="+", help="run, checkpoint or model folders")
    parser.add_argument("--which", choices=("top", "bottom"), default="bottom")
    parser.add_argument("--maps", type=int, default=256, help="held-out maps per figure")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.maps < 1:
        parser.error(f"--maps must be at least 1, got {args.maps}")
    torch.set_num_threads(args.threads)
    held_out = load_codes(args.codes)[0]["heldout"]
    if len(held_out) == 0:
        parser.error(f"{args.codes} has no held-out maps")
    spread = _subset(held_out, torch.linspace(0, len(held_out) - 1, min(args.maps, len(held_out))).round().long())
    device = torch.device("cpu")
    for folder in args.priors:
        source = common.find_checkpoint_dir(folder) or folder
        if not modelio.has_prior(source, args.which):
            parser.error(f"{folder} holds no {args.which} prior")
        prior = modelio.load_prior(source, args.which, device).eval()
        first = evaluate_priors({args.which: prior}, held_out, device, limit=args.maps)
        evenly = evaluate_priors({args.which: prior}, spread, device)
        print(json.dumps({"priors": str(folder), "which": args.which,
                          "first": {k: round(v, 4) for k, v in first.items()},
                          "spread": {k: round(v, 4) for k, v in evenly.items()}}), flush=True)


if __name__ == "__main__":
    main()
