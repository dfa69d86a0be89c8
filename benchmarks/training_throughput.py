"""Training throughput of each component, through the real trainers, in each precision and memory order.

Usage (from the repository root, package importable; the corpus's spectrogram cache filled once, e.g.
by a first `train vqvae` run on it):

    python benchmarks/training_throughput.py --corpus CORPUS --cache CACHE --vqvae models/ --work DIR
        [--threads 2] [--vqvae-steps 40] [--top-steps 20] [--bottom-steps 8]

Prints one row per configuration: examples (notes or code maps) per second as the trainer's own
summary reports them (data loading included, checkpoints not), from a fresh run folder under DIR.
The first row times the data path alone: the training split read from the spectrogram cache in
batches, as the VQ-VAE's DataLoader does, with no model. Stop other work first: the figures are
only comparable on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch


def data_rate(corpus: Path, cache: Path, batch_size: int, batches: int) -> float:
    from notono_live.training.data import open_split

    train = open_split(corpus, "train", cache=cache)
    loader = torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True, num_workers=0)
    seen, started = 0, time.perf_counter()
    for i, batch in enumerate(loader):
        seen += batch["image"].shape[0]
        if i + 1 >= batches:
            break
    return seen / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True, help="the corpus's filled spectrogram cache")
    parser.add_argument("--vqvae", type=Path, required=True, help="VQ-VAE whose codes the priors learn (model folder)")
    parser.add_argument("--work", type=Path, required=True, help="folder for the throw-away run folders")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vqvae-steps", type=int, default=40)
    parser.add_argument("--top-steps", type=int, default=20)
    parser.add_argument("--bottom-steps", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from notono_live.training.priors import PriorsTrainConfig, train_priors
    from notono_live.training.vqvae import VQVAETrainConfig, train_vqvae

    if args.work.exists():
        shutil.rmtree(args.work)
    rows = [("data (cache to batches, no model)", "notes/s", data_rate(args.corpus, args.cache, 16, 60))]
    print(f"{rows[0][0]}: {rows[0][2]:.1f} {rows[0][1]}", flush=True)

    for precision in ("fp32", "bf16"):
        for channels_last in (False, True):
            name = f"vqvae lite {precision}{', channels-last' if channels_last else ''} (batch 8)"
            result = train_vqvae(VQVAETrainConfig(
                corpus=args.corpus, out=args.work / name.replace(" ", "_"), size="lite", batch_size=8,
                max_steps=args.vqvae_steps, cache=args.cache, validation_notes=0, precision=precision,
                channels_last=channels_last))
            rows.append((name, "notes/s", result.summary.notes_per_second))
            print(f"{name}: {rows[-1][2]:.1f} notes/s", flush=True)

    codes = None
    for which, steps in (("top", args.top_steps), ("bottom", args.bottom_steps)):
        for precision in ("fp32", "bf16"):
            out = args.work / f"{which}_{precision}"
            if codes is not None:   # extracted once, by the first run
                out.mkdir(parents=True)
                shutil.copy(codes, out / codes.name)
            result = train_priors(PriorsTrainConfig(
                corpus=args.corpus, vqvae=args.vqvae, out=out, size="lite", which=which, batch_size=32,
                max_steps=steps, cache=args.cache, validation_maps=0, precision=precision))
            codes = codes or out / "codes.safetensors"
            name = f"{which} prior lite {precision} (batch 32)"
            rows.append((name, "maps/s", result.summary.notes_per_second))
            print(f"{name}: {rows[-1][2]:.2f} maps/s", flush=True)

    print("\n| component | throughput |\n|---|---|")
    for name, unit, value in rows:
        print(f"| {name} | {value:.1f} {unit} |")


if __name__ == "__main__":
    main()
