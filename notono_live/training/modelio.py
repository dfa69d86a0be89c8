"""The model components a training checkpoint holds, written with `models.checkpoint`.

A checkpoint folder (RUN_DIR/checkpoint/) holds `vqvae.{json,safetensors}` or
`top_prior.{json,safetensors}` + `bottom_prior.{json,safetensors}`, in float32, with the
normalisation statistics (VQ-VAE), the label encoders and the training summary in the JSON metadata.
That is the same layout as a shipped model folder, so `--vqvae` accepts either.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from . import common

VQVAE_NAME = "vqvae"
PRIOR_NAMES = {"top": "top_prior", "bottom": "bottom_prior"}


def save_vqvae(folder: Path, model, stats, summary: dict[str, Any], size: str, codes_of: str | None = None,
               bottom_dropout: float = 0.0) -> None:
    """`codes_of`: for a decoder-only run, the weights SHA-256 of the VQ-VAE whose codes it keeps.
    `bottom_dropout`: the share of notes its decoder was trained to rebuild from the top codes alone
    (recorded above 0: `NotonoModel` then picks candidates on previews of their top maps)."""
    from ..models import checkpoint
    from ..models.bundle import label_encoders
    from ..representation import MelIF

    metadata = {"normalization_stats": stats.to_dict(), "label_encoders": label_encoders(), "training": summary,
                "size": size, "representation": MelIF().settings()}
    if codes_of is not None:
        metadata["codes_of"] = codes_of
    if bottom_dropout:
        metadata["bottom_dropout"] = float(bottom_dropout)
    checkpoint.save_model(folder, VQVAE_NAME, common.unwrap(model), metadata=metadata)


def codes_identity(metadata: dict[str, Any]) -> str | None:
    """Which codes a VQ-VAE gives: its own weights' SHA-256, or, for one whose decoder alone was
    fine-tuned (`train vqvae --decoder-from`), that of the VQ-VAE it kept the encoders of."""
    return metadata.get("codes_of") or metadata.get("weights_sha256")


def load_vqvae(folder: Path, device: torch.device, with_metadata: bool = False):
    """(VQVAE2 in float32 on device, NormalizationStats[, JSON metadata]) from a folder holding vqvae.json."""
    from ..models import checkpoint
    from ..representation import NormalizationStats

    model, loaded = checkpoint.load_model(folder, VQVAE_NAME, "vqvae", device=device)
    stats_doc = loaded.metadata.get("normalization_stats")
    if stats_doc is None:
        raise checkpoint.CheckpointError(f"{loaded.json_path}: has no normalisation statistics in its metadata")
    try:
        stats = NormalizationStats.from_dict(stats_doc)
    except (TypeError, ValueError) as error:
        raise checkpoint.CheckpointError(f"{loaded.json_path}: bad normalisation statistics ({error})") from None
    metadata = {**loaded.metadata, "weights_sha256": checkpoint.read_checkpoint_json(loaded.json_path).get(
        "weights_sha256")}
    return (model.float(), stats, metadata) if with_metadata else (model.float(), stats)


def load_vqvae_any(path: Path, device: torch.device):
    """A VQ-VAE from a `train vqvae` run folder, its checkpoint folder, or a model folder.

    Returns (model, stats, JSON metadata with the weights' SHA-256, the folder it was read from).
    """
    from ..models.checkpoint import component_paths

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"VQ-VAE folder {path} does not exist")
    candidates = [path]
    run_checkpoint = common.find_checkpoint_dir(path)
    if run_checkpoint is not None:
        candidates.insert(0, run_checkpoint)
    for folder in candidates:
        if component_paths(folder, VQVAE_NAME)[0].is_file():
            model, stats, metadata = load_vqvae(folder, device, with_metadata=True)
            return model, stats, metadata, folder
    raise FileNotFoundError(f"{path} holds no VQ-VAE: expected a `train vqvae` run folder (with "
                            f"{common.CHECKPOINT_DIR}/{VQVAE_NAME}.json) or a model folder with {VQVAE_NAME}.json")


def save_prior(folder: Path, model, which: str, summary: dict[str, Any], size: str,
               codes: dict[str, Any]) -> None:
    from ..models import checkpoint
    from ..models.bundle import label_encoders

    checkpoint.save_model(folder, PRIOR_NAMES[which], common.unwrap(model), metadata={
        "label_encoders": label_encoders(), "training": summary, "size": size, "codes": codes})


def has_prior(folder: Path, which: str) -> bool:
    from ..models.checkpoint import component_paths

    return component_paths(folder, PRIOR_NAMES[which])[0].is_file()


def load_prior(folder: Path, which: str, device: torch.device, with_metadata: bool = False):
    """A TopPrior ("top") or BottomPrior ("bottom") in float32 on device [, its JSON metadata]."""
    from ..models import checkpoint

    model, loaded = checkpoint.load_model(folder, PRIOR_NAMES[which], PRIOR_NAMES[which], device=device)
    return (model.float(), loaded.metadata) if with_metadata else model.float()
