"""How training and evaluation open a corpus: the seeded 80/20 split, the spectrogram cache, statistics.

Thin on purpose: the reader, the split and the cache belong to `notono_live.data.nsynth`; this
module only fixes the names training uses ("train" / "heldout") and computes the normalisation
statistics over the training split, sharded over ranks and reduced, so a multi-GPU job reads each
note once (and fills the spectrogram cache as it goes).
"""
from __future__ import annotations

from pathlib import Path

import torch

from .. import constants
from . import common

SPLIT_NAMES = {"train": "train", "heldout": "valid", "all": "all"}


def open_split(corpus: Path, split: str, seed: int = constants.DEFAULT_SPLIT_SEED, cache: Path | None = None,
               return_audio: bool = False):
    """The `NSynthDataset` of one split ("train", "heldout" or "all") of a corpus."""
    from ..data.nsynth import NSynthDataset

    if split not in SPLIT_NAMES:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLIT_NAMES)}")
    return NSynthDataset(corpus, split=SPLIT_NAMES[split], seed=seed, cache_dir=cache, return_audio=return_audio)


def stats_over_split(dataset, context: common.DistributedContext, batch_size: int = 16, workers: int = 0):
    """Min/max of each channel over the whole split (each rank reads its share; all-reduced)."""
    from tqdm.auto import tqdm

    from ..representation import NormalizationStats

    indices = list(range(context.rank, len(dataset), context.world_size))
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size,
                                         shuffle=False, num_workers=workers)
    low = torch.full((2,), float("inf"), dtype=torch.float64)
    high = torch.full((2,), float("-inf"), dtype=torch.float64)
    for batch in tqdm(loader, desc="normalisation statistics", disable=not context.is_main or common.progress_disabled(), dynamic_ncols=True):
        images = batch["image"].double()
        low = torch.minimum(low, images.amin(dim=(0, 2, 3)))
        high = torch.maximum(high, images.amax(dim=(0, 2, 3)))
    if context.distributed:
        low, high = low.to(context.device), high.to(context.device)
        torch.distributed.all_reduce(low, op=torch.distributed.ReduceOp.MIN)
        torch.distributed.all_reduce(high, op=torch.distributed.ReduceOp.MAX)
        low, high = low.cpu(), high.cpu()
    if not torch.isfinite(low).all():
        raise ValueError(f"{dataset.root}: the training split is empty; cannot compute normalisation statistics")
    return NormalizationStats(log_power_min=float(low[0]), log_power_max=float(high[0]),
                              if_min=float(low[1]), if_max=float(high[1]))
