"""How predictable a VQ-VAE's codes are in time: what its priors have to learn.

    python benchmarks/code_statistics.py RUN/codes.safetensors [OTHER/codes.safetensors ...] [--split train]

For each codes file written by `train priors` (one VQ-VAE's codes of one corpus), prints per map the
perplexity and the share of the codebook used, and how often a cell holds the same code as the cell
of the same band one column earlier (1 s on the top map, 0.5 s on the bottom map), overall and by
column (entry i: column i + 1 against column i), and as the band below it in the same column. A
prior can copy a repeated code from the past almost for free, so codes that repeat along time are
cheaper to model; a sustained or silent note whose codes change from column to column costs the
prior a full choice at every cell.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from notono_live.training.priors import code_usage, load_codes


def along_time(grids: torch.Tensor, mask=None) -> tuple[float, list[float | None]]:
    """grids [N, rows, columns] -> how often a cell holds the same code as its band one column
    earlier, overall and by column 1 … columns − 1, over the cells of `mask` [rows, columns] (bool,
    numpy or torch; None: all) from the second column on; None for a column with no such cell."""
    same = grids[:, :, 1:] == grids[:, :, :-1]
    chosen = torch.ones(same.shape[1:], dtype=torch.bool) if mask is None else torch.as_tensor(mask)[:, 1:]
    by_column = [round(float(same[:, chosen[:, c], c].float().mean()), 3) if chosen[:, c].any() else None
                 for c in range(same.shape[2])]
    return float(same[:, chosen].float().mean()), by_column


def repeats(grids: torch.Tensor) -> dict:
    """grids [N, rows, columns] -> how often a cell repeats its left and lower neighbours."""
    overall, by_column = along_time(grids)
    return {"same_as_previous_column": round(overall, 4), "by_column": by_column,
            "same_as_band_below": round((grids[:, 1:, :] == grids[:, :-1, :]).float().mean().item(), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("codes", type=Path, nargs="+", help="codes.safetensors files written by `train priors`")
    parser.add_argument("--split", choices=("train", "heldout"), default="train")
    args = parser.parse_args()
    for path in args.codes:
        codes = load_codes(path)[0][args.split]
        if len(codes) == 0:
            parser.error(f"{path} has no {args.split} maps")
        report = {"codes": str(path), "split": args.split, "maps": len(codes)}
        for name in ("top", "bottom"):
            grids = getattr(codes, name).long()
            perplexity, used = code_usage(grids.numpy())
            report[name] = {"perplexity": round(perplexity, 1), "used": round(used, 3), **repeats(grids)}
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
