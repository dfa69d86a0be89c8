"""What every training loop shares: torchrun/DDP setup, seeding, resumable sampling, checkpoints, logs.

The loops in `vqvae.py` and `priors.py` are plain PyTorch (nanoGPT style): they call the helpers here
for the parts that have nothing to do with the model. A loop runs unchanged as one process or under
``torchrun --nproc_per_node=N`` (one or many nodes): `setup_distributed` reads torchrun's environment
variables, picks NCCL on CUDA and gloo on CPU, and only rank 0 logs and writes files.

Checkpoints hold no pickles: model weights go through `notono_live.models.checkpoint` (safetensors +
JSON) and the optimiser/step/RNG state goes into a safetensors file with a JSON header
(`save_training_state`). A run directory is resumed automatically from its last checkpoint, at the
exact batch it stopped at, because `ResumableSampler` draws each epoch's order from (seed, epoch).
"""
from __future__ import annotations

import functools
import json
import math
import os
import random
import shutil
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist

TRAINING_STATE_FORMAT = "notono-training-state"
TRAINING_STATE_VERSION = 1
TRAINING_STATE_FILE = "training_state.safetensors"
CHECKPOINT_DIR = "checkpoint"          # RUN_DIR/checkpoint/ is always the last complete checkpoint


# --- Distributed setup ----------------------------------------------------------------------

@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in a (possibly one-process) training job.

    Args:
        rank: global rank (0 for a single process).
        world_size: number of processes in the job.
        local_rank: rank on this node; picks the CUDA device.
        device: the device this process trains on.
        backend: "nccl", "gloo", or None when not distributed.
        owns_group: True when `setup_distributed` created the process group (and so tears it down);
            a group the caller initialised is used and left alone.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str | None, local_rank: int = 0) -> torch.device:
    """"auto"/None -> cuda:<local_rank> when CUDA exists, else cpu; anything else is taken as given."""
    if name in (None, "auto"):
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available on this machine")
    return device


def setup_distributed(device: str | None = "auto") -> DistributedContext:
    """Join the torchrun job described by RANK/WORLD_SIZE/LOCAL_RANK, or run alone if there is none.

    Multi-node works the same way: torchrun (``--nnodes``, ``--rdzv-endpoint``) sets the variables.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if world_size <= 1:
        return DistributedContext(device=resolved)
    backend = "nccl" if resolved.type == "cuda" else "gloo"
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    else:
        backend = dist.get_backend()
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank,
                              device=resolved, backend=backend, owns_group=owns_group)


def teardown_distributed(context: DistributedContext) -> None:
    """Leave the job: a barrier so no rank exits while others still write, then destroy our group.

    Re-creating a default group in the same process is fragile (the rendezvous store is reused), so
    code that runs several loops in one process should initialise torch.distributed itself; the
    loops then share that group and leave it alone.
    """
    if context.distributed and dist.is_initialized():
        dist.barrier()
        if context.owns_group:
            dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    """Same seed on every rank: models start identical (DDP also broadcasts rank 0's weights)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def all_reduce_mean(values: Sequence[float], context: DistributedContext) -> list[float]:
    """Average logged scalars over ranks (a no-op alone) so rank 0's log speaks for the whole job."""
    if not context.distributed:
        return [float(v) for v in values]
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return (tensor / context.world_size).tolist()


# --- Resumable, rank-sharded sampling -------------------------------------------------------

class ResumableSampler(torch.utils.data.Sampler[int]):
    """Epoch-seeded shuffled order, sharded over ranks, that can start in the middle of an epoch.

    Every rank draws the same permutation from (seed, epoch), pads it to a multiple of the world
    size (as DistributedSampler does) and takes every world_size-th index. `start_batch` skips the
    batches a resumed run has already seen, so resuming does not replay or skip data.

    Args:
        num_items: size of the dataset (the training split).
        batch_size: per-rank batch size (used to turn `start_batch` into an item offset).
        rank: this process's rank.
        world_size: number of ranks.
        seed: the run's seed.
        shuffle: False keeps the natural order (evaluation, code extraction).
    """

    def __init__(self, num_items: int, batch_size: int, rank: int = 0, world_size: int = 1,
                 seed: int = 0, shuffle: bool = True) -> None:
        if num_items <= 0:
            raise ValueError("cannot train on an empty split (0 notes)")
        self.num_items = num_items
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.start_batch = 0
        self.per_rank = math.ceil(num_items / world_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def batches_per_epoch(self, drop_last: bool) -> int:
        return self.per_rank // self.batch_size if drop_last else math.ceil(self.per_rank / self.batch_size)

    def _indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.num_items, generator=generator).tolist()
        else:
            order = list(range(self.num_items))
        total = self.per_rank * self.world_size
        order += order[: total - len(order)] if total > len(order) else []
        while len(order) < total:          # tiny datasets with more ranks than items
            order += order[: total - len(order)]
        return order[self.rank:total:self.world_size][self.start_batch * self.batch_size:]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        return max(0, self.per_rank - self.start_batch * self.batch_size)


# --- Stopping: time budget, periodic checkpoints, SIGTERM / Ctrl-C --------------------------

class StopControl:
    """Decides, identically on every rank, when to checkpoint and when to stop.

    Rank-local triggers (a signal, the clock) are combined with an all-reduce(MAX) each step so
    that all ranks save and stop at the same step; a rank that stopped alone would hang the others
    in their next collective.

    Args:
        context: the distributed context.
        minutes: time budget for this invocation (None: no budget).
        checkpoint_minutes: save at least this often.
        started: `time.monotonic()` at which the budget began (default: now).
    """

    def __init__(self, context: DistributedContext, minutes: float | None,
                 checkpoint_minutes: float = 5.0, started: float | None = None) -> None:
        self.context = context
        # the budget covers the whole invocation (statistics pass, code extraction) when told its start
        self.started = time.monotonic() if started is None else started
        self.deadline = None if minutes is None else self.started + 60.0 * minutes
        self.checkpoint_every = 60.0 * checkpoint_minutes
        self.last_checkpoint = time.monotonic()
        self.signalled: str | None = None
        self._previous: dict[int, Any] = {}

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[signum] = signal.signal(signum, self._on_signal)
            except ValueError:  # not the main thread (e.g. inside some test runners)
                pass

    def restore_signal_handlers(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: Any) -> None:
        # A second Ctrl-C while we are saving falls back to the default (immediate) behaviour.
        self.signalled = signal.Signals(signum).name
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

    def poll(self) -> tuple[bool, bool]:
        """(save_now, stop_now), agreed by every rank."""
        now = time.monotonic()
        stop = self.signalled is not None or (self.deadline is not None and now >= self.deadline)
        save = stop or now - self.last_checkpoint >= self.checkpoint_every
        if self.context.distributed:
            flags = torch.tensor([int(save), int(stop)], device=self.context.device)
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
            save, stop = bool(flags[0]), bool(flags[1])
        return save, stop

    def saved(self) -> None:
        self.last_checkpoint = time.monotonic()

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


# --- Learning-rate schedule -----------------------------------------------------------------

def decayed_lr(lr: float, step: int, total_steps: int | None, decay_steps: int) -> float:
    """The learning rate of the optimiser step that follows `step` steps done: `lr`, except over the
    last `decay_steps` steps before `total_steps`, where it falls linearly towards 0 (the last step
    runs at lr / decay_steps). A function of the step alone, so a resumed run picks it up where it was;
    a run trained at a constant rate can be given this cool-down at the end of its life."""
    if decay_steps <= 0 or total_steps is None:
        return lr
    return lr * min(1.0, max(0, total_steps - step) / decay_steps)


# --- Training state (optimiser, step, RNG) in safetensors ------------------------------------

def _optimizer_to_tensors(prefix: str, optimizer: torch.optim.Optimizer,
                          tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    state = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state["state"].items():
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.state.{param_id}.{key}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items()}
              for group in state["param_groups"]]
    return {"param_groups": groups, "scalars": scalars}


def _optimizer_from_tensors(prefix: str, optimizer: torch.optim.Optimizer, meta: dict[str, Any],
                            tensors: dict[str, torch.Tensor], source: Path) -> None:
    groups = []
    for group, saved in zip(optimizer.state_dict()["param_groups"], meta["param_groups"]):
        if len(group["params"]) != len(saved["params"]):
            raise ValueError(f"{source}: optimiser {prefix!r} was saved for {len(saved['params'])} parameters, "
                             f"the model has {len(group['params'])}; the checkpoint does not match this config")
        groups.append({k: (tuple(v) if k == "betas" else v) for k, v in saved.items()})
    if len(groups) != len(meta["param_groups"]):
        raise ValueError(f"{source}: optimiser {prefix!r} has a different number of parameter groups")
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith(prefix + ".state."):
            continue
        param_id, key = name[len(prefix) + 7:].split(".", 1)
        state.setdefault(int(param_id), {})[key] = value
    for param_id, values in meta.get("scalars", {}).items():
        state.setdefault(int(param_id), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": groups})


@dataclass
class TrainingState:
    """Where a run stands: counters plus anything loop-specific (kept in JSON).

    Args:
        step: optimiser steps done so far.
        epoch: current epoch.
        batch_in_epoch: batches of `epoch` already consumed (resume point).
        notes_seen: training notes processed over the whole run (all ranks).
        train_seconds: wall-clock seconds spent training over the whole run.
        extra: loop-specific JSON-able values (config, args, last losses...).
    """

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    notes_seen: int = 0
    train_seconds: float = 0.0
    extra: dict[str, Any] | None = None


def save_training_state(path: Path, state: TrainingState,
                        optimizers: dict[str, torch.optim.Optimizer]) -> None:
    """Write counters, optimiser moments and the torch RNG state to one safetensors file."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state().clone()}
    optim_meta = {name: _optimizer_to_tensors(f"optim.{name}", opt, tensors) for name, opt in optimizers.items()}
    header = {
        "format": TRAINING_STATE_FORMAT, "version": TRAINING_STATE_VERSION,
        "step": state.step, "epoch": state.epoch, "batch_in_epoch": state.batch_in_epoch,
        "notes_seen": state.notes_seen, "train_seconds": state.train_seconds,
        "extra": state.extra or {}, "optimizers": optim_meta,
    }
    save_file(tensors, str(path), metadata={"notono": json.dumps(header)})


def load_training_state(path: Path, optimizers: dict[str, torch.optim.Optimizer],
                        restore_rng: bool = True) -> TrainingState:
    """Read what `save_training_state` wrote into the given optimisers; refuse a foreign/corrupt file."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except FileNotFoundError:
        raise
    except Exception as error:  # safetensors raises its own error types for damaged headers
        raise ValueError(f"{path}: not a readable safetensors training state ({error})") from None
    try:
        header = json.loads(metadata["notono"])
    except (KeyError, json.JSONDecodeError):
        raise ValueError(f"{path}: has no NOTONO training-state header") from None
    if header.get("format") != TRAINING_STATE_FORMAT or header.get("version") != TRAINING_STATE_VERSION:
        raise ValueError(f"{path}: format {header.get('format')!r} version {header.get('version')!r} "
                         f"is not a training state this version can read")
    missing = set(optimizers) - set(header["optimizers"])
    if missing:
        raise ValueError(f"{path}: no state for optimiser(s) {sorted(missing)}")
    for name, optimizer in optimizers.items():
        _optimizer_from_tensors(f"optim.{name}", optimizer, header["optimizers"][name], tensors, path)
    if restore_rng and "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    return TrainingState(step=int(header["step"]), epoch=int(header["epoch"]),
                         batch_in_epoch=int(header["batch_in_epoch"]), notes_seen=int(header["notes_seen"]),
                         train_seconds=float(header["train_seconds"]), extra=header.get("extra") or {})


def write_checkpoint_dir(run_dir: Path, write: Callable[[Path], None]) -> Path:
    """Write a checkpoint into a temporary folder, then swap it in as RUN_DIR/checkpoint.

    A crash at any point leaves either the old or the new checkpoint complete, never a mix: the
    old one is moved aside before the new one is renamed into place, and found again on resume.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    final = run_dir / CHECKPOINT_DIR
    temporary = run_dir / (CHECKPOINT_DIR + ".tmp")
    previous = run_dir / (CHECKPOINT_DIR + ".old")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    write(temporary)
    shutil.rmtree(previous, ignore_errors=True)
    if final.exists():
        final.rename(previous)
    temporary.rename(final)
    shutil.rmtree(previous, ignore_errors=True)
    return final


def find_checkpoint_dir(run_dir: Path) -> Path | None:
    """The last complete checkpoint of a run, or None for a fresh run."""
    run_dir = Path(run_dir)
    for name in (CHECKPOINT_DIR, CHECKPOINT_DIR + ".old"):
        candidate = run_dir / name
        if (candidate / TRAINING_STATE_FILE).is_file():
            return candidate
    return None


def broadcast_object(value: Any, context: DistributedContext) -> Any:
    """Rank 0's value on every rank (small JSON-able things: stats, resume counters)."""
    if not context.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# --- Logging --------------------------------------------------------------------------------

def progress_disabled() -> bool:
    """Progress bars are off when NOTONO_NO_PROGRESS=1 (CI logs, tests)."""
    return os.environ.get("NOTONO_NO_PROGRESS") == "1"


class RunLogger:
    """TensorBoard scalars + a tqdm bar + a JSON-lines log, on rank 0 only (silent elsewhere).

    Args:
        run_dir: the run folder; TensorBoard events go to RUN_DIR/tensorboard.
        context: the distributed context.
        total: steps expected (None for a time-boxed run).
        initial: step the bar starts at (a resumed run).
        description: bar label.
    """

    def __init__(self, run_dir: Path, context: DistributedContext, total: int | None, initial: int,
                 description: str) -> None:
        self.enabled = context.is_main
        self.writer = None
        self.bar = None
        self.log_path = Path(run_dir) / "log.jsonl"
        if not self.enabled:
            return
        from torch.utils.tensorboard import SummaryWriter
        from tqdm.auto import tqdm

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
        self.bar = tqdm(total=total, initial=initial, desc=description, dynamic_ncols=True,
                        disable=progress_disabled())

    def step(self, step: int, scalars: dict[str, float], advance: int = 1) -> None:
        if not self.enabled:
            return
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)
        self.bar.update(advance)
        self.bar.set_postfix({k.split("/")[-1]: f"{v:.4g}" for k, v in scalars.items() if "/" in k
                              and not k.startswith("speed")}, refresh=False)

    def record(self, entry: dict[str, Any]) -> None:
        """Append a line to RUN_DIR/log.jsonl (epoch summaries, checkpoints, stops)."""
        if not self.enabled:
            return
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")

    def message(self, text: str) -> None:
        if self.enabled:
            if self.bar is not None:
                self.bar.write(text)
            else:
                print(text, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        self.bar.close()
        self.writer.flush()
        self.writer.close()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module inside a DistributedDataParallel wrapper (for saving)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> None:
    """ValueError unless `precision` is a training precision (`--precision`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be 'fp32' or 'bf16', got {precision!r}")


def forward_autocast(precision: str, device: torch.device) -> Callable[[], Any]:
    """A context-manager factory for forward passes: bfloat16 autocast for "bf16", a no-op for
    "fp32" (weights and optimiser state stay fp32 either way). Warns when bf16 is asked of a CPU
    without bf16 arithmetic, where it is emulated and much slower than fp32."""
    from ..models.step import packed_bf16_available

    if precision == "bf16" and device.type == "cpu" and not packed_bf16_available(device):
        warnings.warn("--precision bf16 on a CPU without bf16 arithmetic (no AVX512_BF16 or AMX): it is "
                      "emulated, and a VQ-VAE step ran 13x slower than in fp32 on an AVX2 CPU; use "
                      "--precision fp32 here", RuntimeWarning, stacklevel=2)
    return functools.partial(torch.autocast, device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
