"""`notono-live train export`: a VQ-VAE run + a priors run -> the fp16 folder `NotonoModel.load` reads.

The priors must have been trained on codes of *this* VQ-VAE: the codes file records the SHA-256 of
the VQ-VAE weights it was extracted with, and export refuses a pair that does not match (the priors
would otherwise drive a decoder whose codebook means something else). The folder is assembled in a
temporary sibling, loaded back once as a check, and only then moved into place file by file, so a
failed export leaves the destination as it was (a model card already there is kept).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from . import common, modelio

MODEL_FILES = ("vqvae", "top_prior", "bottom_prior")


def _checkpoint_or_folder(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} folder {path} does not exist")
    return common.find_checkpoint_dir(path) or path


def _find_prior(folders: list[Path], which: str) -> Path:
    """The first of the priors run folders whose checkpoint holds the `which` prior."""
    for folder in folders:
        if modelio.has_prior(folder, which):
            return folder
    raise FileNotFoundError(f"none of {', '.join(str(f) for f in folders)} holds a {modelio.PRIOR_NAMES[which]}.json: "
                            f"train it (`train priors --which {which}` or `--which both`) before exporting")


def _portable(training: dict) -> dict:
    """Training metadata fit to ship: a run folder is named by its last part only, so no path of
    the machine that trained the model ends up in the exported JSON."""
    return {key: Path(value).name if key == "run_dir" and isinstance(value, str) else value
            for key, value in training.items()}


def _bottom_dropout(metadata: dict, folder: Path) -> float:
    """The share of bottom dropout the VQ-VAE's decoder was trained with: from its metadata, or, for
    a checkpoint written before the metadata recorded it, from the training state beside it."""
    if "bottom_dropout" in metadata:
        return float(metadata["bottom_dropout"])
    if not (Path(folder) / common.TRAINING_STATE_FILE).is_file():
        return 0.0
    from .vqvae import read_checkpoint_config
    return float((read_checkpoint_config(folder).get("config") or {}).get("bottom_dropout", 0.0))


def export_model(vqvae_run: Path, priors_run: Path | list[Path], out: Path, dtype: torch.dtype = torch.float16,
                 name: str | None = None) -> Path:
    """Write vqvae/top_prior/bottom_prior .json + .safetensors into `out`; returns `out`.

    `priors_run` is one `train priors` run folder holding both priors, or a list of folders (for
    example a `--which top` run and a `--which bottom` run); each prior is taken from the first
    folder that has it.
    """
    from ..models.bundle import NotonoModel

    device = torch.device("cpu")
    vqvae, stats, vqvae_metadata, vqvae_folder = modelio.load_vqvae_any(vqvae_run, device)
    runs = [priors_run] if isinstance(priors_run, (str, Path)) else list(priors_run)
    folders = [_checkpoint_or_folder(run, "priors run") for run in runs]
    top, top_metadata = modelio.load_prior(_find_prior(folders, "top"), "top", device, with_metadata=True)
    bottom, bottom_metadata = modelio.load_prior(_find_prior(folders, "bottom"), "bottom", device,
                                                 with_metadata=True)
    priors_folder = ", ".join(str(f) for f in folders)
    # the priors must have learnt this VQ-VAE's codes: its own, or those of the VQ-VAE a decoder-only
    # run (`train vqvae --decoder-from`) started from, whose encoders and codebooks it kept
    expected = {modelio.codes_identity(vqvae_metadata), vqvae_metadata.get("weights_sha256")} - {None}
    for which, metadata in (("top", top_metadata), ("bottom", bottom_metadata)):
        trained_on = (metadata.get("codes") or {}).get("vqvae_sha256")
        if expected and trained_on and trained_on not in expected:
            raise ValueError(f"the {which} prior in {priors_folder} was trained on codes of another VQ-VAE "
                             f"({(metadata.get('codes') or {}).get('vqvae')}), not of {vqvae_folder}; "
                             f"retrain the priors on this VQ-VAE or export the matching pair")
    training = {"vqvae": _portable(vqvae_metadata.get("training", {})),
                "top_prior": _portable(top_metadata.get("training", {})),
                "bottom_prior": _portable(bottom_metadata.get("training", {}))}
    out = Path(out)
    model = NotonoModel(vqvae, top, bottom, stats, device="cpu", name=name or out.resolve().name,
                        size=vqvae_metadata.get("size", "custom"), training=training,
                        representation=vqvae_metadata.get("representation"),
                        bottom_dropout=_bottom_dropout(vqvae_metadata, vqvae_folder))
    staging = out.parent / f".{out.name}.export-tmp"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        # an unchanged component keeps its file in `out` byte for byte: no new weights in git history
        model.save(staging, dtype=dtype, keep_from=out)
        NotonoModel.load(staging)          # refuse to ship what would not load
        out.mkdir(parents=True, exist_ok=True)
        for stem in MODEL_FILES:
            # weights before descriptions, as models.checkpoint writes them
            for suffix in (".safetensors", ".json"):
                os.replace(staging / f"{stem}{suffix}", out / f"{stem}{suffix}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def folder_size_bytes(folder: Path) -> int:
    """Bytes of the model files in a folder (what the < 50 MB budget counts)."""
    return sum((Path(folder) / f"{stem}{suffix}").stat().st_size
               for stem in MODEL_FILES for suffix in (".safetensors", ".json"))
