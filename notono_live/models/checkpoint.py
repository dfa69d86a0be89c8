"""Checkpoints of one model component: `<name>.safetensors` (weights) + `<name>.json` (what they are).

The JSON document names its format and version, the component's class and config, the shapes of
the tensors it expects, a SHA-256 of the weights file, and free metadata (normalisation statistics,
label encoders, training summary). Loading checks all of it before any weight reaches a model and
refuses with a `CheckpointError` naming the file and the reason: missing file, truncated or corrupt
weights, a foreign or newer format, a config that does not match the tensors. Weights may be stored
in fp16 (half the size on disk); they are always loaded to fp32. Only safetensors is used, never
pickle, so loading a checkpoint cannot run code.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from ..fileio import atomic_write_bytes

CHECKPOINT_FORMAT = "notono-checkpoint"
CHECKPOINT_VERSION = 1

# EMA statistics of the codebooks grow with the batch size; fp16 (max 65504) could overflow them
_KEEP_FP32_SUFFIXES = ("cluster_size", "embed_avg")


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or does not match what it claims to hold."""


@dataclass
class Checkpoint:
    """What `load_component` read and verified.

    Args:
        component: the component kind written at save time ("vqvae", "top_prior", …).
        config: the component's config as a dict.
        state_dict: fp32 tensors (integer tensors keep their dtype).
        metadata: free metadata saved with it (normalisation stats, labels, training summary).
        json_path, weights_path: the two files.
    """

    component: str
    config: dict
    state_dict: dict[str, torch.Tensor]
    metadata: dict = field(default_factory=dict)
    json_path: Path | None = None
    weights_path: Path | None = None


def component_paths(directory: str | Path, name: str) -> tuple[Path, Path]:
    """(`<name>.json`, `<name>.safetensors`) inside directory."""
    directory = Path(directory)
    return directory / f"{name}.json", directory / f"{name}.safetensors"


def save_component(directory: str | Path, name: str, state: nn.Module | dict[str, torch.Tensor],
                   component: str, config: dict, metadata: dict | None = None,
                   dtype: torch.dtype = torch.float32, keep_from: str | Path | None = None) -> tuple[Path, Path]:
    """Write `<name>.safetensors` and `<name>.json` into directory (each atomically).

    Args:
        directory: folder to write into (created if needed).
        name: file stem, e.g. "vqvae".
        state: a module (its state_dict is saved) or a dict of tensors.
        component: kind of component, checked at load time (e.g. "vqvae", "top_prior").
        config: the component's config as a JSON-serialisable dict.
        metadata: extra JSON-serialisable facts to keep with the weights.
        dtype: floating dtype on disk (float32 or float16); codebook EMA statistics stay float32.
        keep_from: the folder whose `<name>.safetensors` to keep byte for byte when it holds exactly
            these tensors and metadata (default: `directory` itself). Safetensors does not fix its
            header's key order from one process to the next, so without this an unchanged component
            could be rewritten with new bytes and cost new weights in git history.

    Returns:
        (json_path, weights_path).
    """
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"checkpoint dtype must be float32, float16 or bfloat16, got {dtype}")
    tensors = state.state_dict() if isinstance(state, nn.Module) else dict(state)
    stored = {}
    for key, tensor in tensors.items():
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point() and not key.endswith(_KEEP_FP32_SUFFIXES):
            tensor = tensor.to(dtype)
        stored[key] = tensor.contiguous()
    data = save_safetensors_bytes(stored, metadata={"format": CHECKPOINT_FORMAT, "component": component})
    json_path, weights_path = component_paths(directory, name)
    existing = _same_safetensors(component_paths(keep_from or directory, name)[1], data)
    if existing is not None:
        data = existing
    document = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "component": component,
        "config": config,
        "weights_file": weights_path.name,
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        "dtype": str(dtype).replace("torch.", ""),
        "tensors": {key: list(t.shape) for key, t in stored.items()},
        "metadata": metadata or {},
    }
    text = json.dumps(document, indent=2, sort_keys=False)
    # weights first: a JSON is only ever beside the weights it describes
    if existing is None or keep_from is not None:   # else the file in place already holds these bytes
        atomic_write_bytes(weights_path, data)
    atomic_write_bytes(json_path, (text + "\n").encode())
    return json_path, weights_path


def _safetensors_parts(data: bytes) -> tuple[dict, bytes] | None:
    """(header as a dict, tensor bytes) of a safetensors file's contents, or None if unreadable."""
    if len(data) < 8:
        return None
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        return None
    try:
        header = json.loads(data[8:8 + size])
    except ValueError:
        return None
    return (header, data[8 + size:]) if isinstance(header, dict) else None


def _same_safetensors(path: Path, data: bytes) -> bytes | None:
    """The bytes of the file at `path` if it holds exactly what `data` holds (same tensors, dtypes,
    shapes, offsets, values and metadata, whatever the order of the header's keys); else None."""
    try:
        old = path.read_bytes()
    except OSError:
        return None
    if old == data:
        return old
    ours, theirs = _safetensors_parts(data), _safetensors_parts(old)
    return old if ours is not None and ours == theirs else None


def load_component(directory: str | Path, name: str, component: str | None = None,
                   expected_state: dict[str, torch.Tensor] | nn.Module | None = None) -> Checkpoint:
    """Read and verify `<name>.json` + `<name>.safetensors` from directory.

    Args:
        directory: folder holding the two files.
        name: file stem.
        component: if given, the component kind the JSON must declare.
        expected_state: a module (or state dict) built from the JSON's config; the stored tensors
            must have exactly its keys and shapes.

    Raises:
        FileNotFoundError: a file is missing (message names it).
        CheckpointError: anything else wrong (message names the file and the reason).
    """
    json_path, weights_path = component_paths(directory, name)
    document = read_checkpoint_json(json_path)
    if component is not None and document.get("component") != component:
        raise CheckpointError(f"{json_path}: holds a {document.get('component')!r} component, "
                              f"expected {component!r}")
    if not weights_path.is_file():
        raise FileNotFoundError(f"checkpoint weights {weights_path} are missing "
                                f"(described by {json_path.name})")
    data = weights_path.read_bytes()
    digest = document.get("weights_sha256")
    if digest and hashlib.sha256(data).hexdigest() != digest:
        raise CheckpointError(f"{weights_path}: contents do not match the SHA-256 recorded in "
                              f"{json_path.name} (truncated, corrupt or replaced file)")
    try:
        stored = load_safetensors_bytes(data)
    except (SafetensorError, ValueError, RuntimeError, OSError) as error:
        raise CheckpointError(f"{weights_path}: not a readable safetensors file ({error})") from None
    shapes = document.get("tensors")
    if isinstance(shapes, dict):
        compare_shapes(weights_path, {k: list(v.shape) for k, v in stored.items()}, shapes,
                        f"the tensor list in {json_path.name}")
    if expected_state is not None:
        expected = expected_state.state_dict() if isinstance(expected_state, nn.Module) else expected_state
        compare_shapes(weights_path, {k: list(v.shape) for k, v in stored.items()},
                        {k: list(v.shape) for k, v in expected.items()},
                        f"the model built from the config in {json_path.name}")
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in stored.items()}
    return Checkpoint(document["component"], document["config"], state, document.get("metadata", {}),
                      json_path, weights_path)


def read_checkpoint_json(json_path: str | Path) -> dict:
    """Parse and check the JSON half of a checkpoint (format, version, required keys)."""
    json_path = Path(json_path)
    if not json_path.is_file():
        raise FileNotFoundError(f"checkpoint description {json_path} is missing")
    try:
        document = json.loads(json_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{json_path}: not valid JSON ({error})") from None
    if not isinstance(document, dict) or document.get("format") != CHECKPOINT_FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise CheckpointError(f"{json_path}: not a NOTONO checkpoint (format {found!r}, "
                              f"expected {CHECKPOINT_FORMAT!r})")
    version = document.get("version")
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(f"{json_path}: checkpoint version {version!r} is not supported "
                              f"(this NOTONO Live reads version {CHECKPOINT_VERSION})")
    for key in ("component", "config"):
        if key not in document:
            raise CheckpointError(f"{json_path}: missing key {key!r}")
    if not isinstance(document["config"], dict):
        raise CheckpointError(f"{json_path}: 'config' must be an object")
    return document


def compare_shapes(path: Path, found: dict[str, list[int]], expected: dict[str, list[int]],
                    against: str) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing:
        raise CheckpointError(f"{path}: missing tensors expected by {against}: "
                              f"{', '.join(missing[:5])}{' …' if len(missing) > 5 else ''} "
                              f"(the description does not match the weights)")
    if unexpected:
        raise CheckpointError(f"{path}: unexpected tensors not in {against}: "
                              f"{', '.join(unexpected[:5])}{' …' if len(unexpected) > 5 else ''} "
                              f"(the description does not match the weights)")
    for key in sorted(expected):
        if list(found[key]) != list(expected[key]):
            raise CheckpointError(f"{path}: tensor {key!r} has shape {list(found[key])} but "
                                  f"{against} expects {list(expected[key])} (the description does "
                                  f"not match the weights)")


# ----------------------------------------------------------------------------------------------
# Whole models: the component kind says which class and config to rebuild

def component_classes(component: str):
    """The model and config classes of a component name (vqvae, top_prior, bottom_prior)."""
    from .priors import BottomPrior, PriorConfig, TopPrior
    from .vqvae import VQVAE2, VQVAE2Config
    classes = {"vqvae": (VQVAE2, VQVAE2Config), "top_prior": (TopPrior, PriorConfig),
               "bottom_prior": (BottomPrior, PriorConfig)}
    if component not in classes:
        raise ValueError(f"unknown component {component!r}; expected one of {', '.join(classes)}")
    return classes[component]


def component_kind(model: nn.Module) -> str:
    """"vqvae", "top_prior" or "bottom_prior" for a model instance."""
    from .priors import BottomPrior, TopPrior
    from .vqvae import VQVAE2
    for kind, cls in (("vqvae", VQVAE2), ("top_prior", TopPrior), ("bottom_prior", BottomPrior)):
        if isinstance(model, cls):
            return kind
    raise ValueError(f"cannot checkpoint a {type(model).__name__}")


def save_model(directory: str | Path, name: str, model: nn.Module, metadata: dict | None = None,
               dtype: torch.dtype = torch.float32, keep_from: str | Path | None = None) -> tuple[Path, Path]:
    """Save a VQVAE2, TopPrior or BottomPrior with its config (see `save_component`)."""
    return save_component(directory, name, model, component_kind(model), model.config.to_dict(),
                          metadata, dtype, keep_from)


def load_model(directory: str | Path, name: str, component: str,
               device: str | torch.device = "cpu") -> tuple[nn.Module, Checkpoint]:
    """Rebuild a model from `<name>.json`'s config and load `<name>.safetensors` into it (eval mode).

    Raises FileNotFoundError or CheckpointError naming the file at fault.
    """
    model_cls, config_cls = component_classes(component)
    json_path, _ = component_paths(directory, name)
    document = read_checkpoint_json(json_path)
    if document.get("component") != component:
        raise CheckpointError(f"{json_path}: holds a {document.get('component')!r} component, "
                              f"expected {component!r}")
    try:
        config = config_cls.from_dict(document["config"])
        model = model_cls(config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{json_path}: invalid {component} config ({error})") from None
    checkpoint = load_component(directory, name, component, expected_state=model)
    model.load_state_dict(checkpoint.state_dict, strict=True)
    return model.to(device).eval(), checkpoint
