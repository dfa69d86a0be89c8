"""Train the VQ-VAE-2 on a corpus's training split (NOTONO, Bazin et al., 2020): `notono-live train vqvae`.

Read top to bottom: set up the (possibly distributed) job, open the training split with its
spectrogram cache, compute the normalisation statistics once (min/max over the training split), build
or resume the model and Adam, then loop: normalise, reconstruct, MSE in normalised Mel-IF units plus
the commitment term, step, log, and checkpoint every few minutes, at the time budget, at the end of the
epochs asked for, and on SIGTERM/Ctrl-C. Running the same command on the same RUN_DIR resumes.

`--decoder-from VQVAE` starts a run from a trained VQ-VAE and trains its decoder only: the encoders and
both codebooks are frozen (no gradient, no EMA update, no dead-code restart), so every note keeps its
codes and priors trained on that VQ-VAE's codes stay valid. The checkpoint's metadata records whose
codes it shares (`codes_of`), which is what `train export` checks.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import constants
from . import common
from .data import open_split, stats_over_split

DEFAULT_CACHE_DIR = "spectrogram_cache"   # RUN_DIR/spectrogram_cache/ unless --cache says otherwise


@dataclass
class VQVAETrainConfig:
    """Settings of one `train vqvae` run.

    Args:
        corpus: NSynth-layout corpus folder (examples.json + audio/).
        out: run folder; checkpoints, TensorBoard events and log.jsonl go here. Re-using it resumes.
        size: model size name ("lite" trains on a 2-core CPU, "reference" is the paper's).
        model_overrides: fields of `VQVAE2Config` to change from the size's defaults (tests, sweeps).
        epochs: stop after this many epochs (None: only the time budget / max_steps stop the run).
        minutes: time budget of this invocation in minutes.
        max_steps: stop at this global step (tests, smoke runs).
        batch_size: notes per rank per step (paper: 64 on one GPU).
        lr: Adam learning rate (paper: 3e-4).
        lr_decay_steps: over this many last steps before the run's end (max_steps or epochs, which
            must be set), the learning rate falls linearly towards 0 (`common.decayed_lr`), as
            `train priors` does: a run trained at a constant rate can be cooled down on a copy.
        seed: seed of the weights and the epoch orders.
        split_seed: seed of the 80/20 split (must match the one eval uses).
        cache: spectrogram cache folder (None: RUN_DIR/spectrogram_cache). Share one folder between
            runs on the same corpus to compute each note's image only once.
        workers: DataLoader worker processes.
        device: "auto", "cpu", "cuda", "cuda:1"...
        checkpoint_minutes: checkpoint at least this often.
        validation_notes: held-out notes (spread over the families) whose reconstruction MSE, spectral
            convergence, log-spectral distance and code perplexities are logged at each checkpoint.
        magnitude_weight: how much more the reconstruction loss weighs the log-power channel than the
            instantaneous-frequency one (1: plain MSE over both, the paper's; W: the channels weigh
            2W/(W+1) and 2/(W+1) in the mean over both, so the loss keeps its scale). SC and LSD score the magnitude of
            the decoded audio only (ours, an experiment: `docs/training.md`).
        spectral_weight: weight of a spectral-convergence term added to the loss, on the Mel
            magnitudes the log-power channel stands for (`spectral_convergence_loss`): the norm of
            the magnitude error over the norm of the magnitude, so loud bins count as they do in the
            SC that `eval` scores (0: none, the paper's; ours, an experiment: `docs/training.md`).
        decoder_from: a trained VQ-VAE (run folder, checkpoint or model folder) to start from and train
            the decoder of only, its encoders and codebooks frozen (None: train everything). Only read
            when RUN_DIR has no checkpoint yet; a run started this way stays decoder-only on resume.
            `model_overrides["decoder_refine"]` then adds refinement blocks to that decoder
            (`VQVAE2Config.decoder_refine`; they start as the identity, so the run starts from the
            decoder's own reconstructions).
        bottom_dropout: the share of each batch's notes whose decoder input has its bottom vectors
            zeroed (`VQVAE2.forward`'s `drop_bottom`), so the decoder learns to rebuild a note from
            its top codes alone and the top codes learn to carry what it needs (0: none, the paper's;
            ours, an experiment: `docs/training.md`). Inference always decodes both maps.
        precision: "fp32", or "bf16" to run forward passes under bfloat16 autocast; weights, Adam's
            state and the quantisers (distances, EMA codebook, commitment) stay fp32. A run may
            switch precision when it resumes.
        channels_last: keep the convolutions' weights and inputs in channels-last memory order
            (measured 1.17-1.18x faster on an AVX512-BF16 CPU in both precisions; checkpoints are
            written in the usual order, so the setting may change on resume).
    """

    corpus: Path
    out: Path
    size: str = "lite"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None
    minutes: float | None = None
    max_steps: int | None = None
    batch_size: int = 16
    lr: float = 3e-4
    lr_decay_steps: int = 0
    seed: int = 0
    split_seed: int = constants.DEFAULT_SPLIT_SEED
    cache: Path | None = None
    workers: int = 0
    device: str = "auto"
    checkpoint_minutes: float = 5.0
    validation_notes: int = 64
    decoder_from: Path | None = None
    magnitude_weight: float = 1.0
    spectral_weight: float = 0.0
    bottom_dropout: float = 0.0
    precision: str = "fp32"
    channels_last: bool = True


# the modules that turn quantised vectors into an image: the only ones a decoder-only run trains
DECODER_MODULES = ("upsample_top", "decoder", "decoder_refine")


def freeze_encoding(model) -> list[torch.nn.Parameter]:
    """Freeze what decides a note's codes (encoders, pre-quantisation layers, codebooks); return the
    decoder's parameters, the only ones left to train. The codebooks are frozen by flag, not by eval
    mode, so a later `model.train()` (validation restores the mode) cannot start their EMA again."""
    trainable = {id(p) for name in DECODER_MODULES if hasattr(model, name)
                 for p in getattr(model, name).parameters()}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in trainable)
    model.quantize_top.frozen = True
    model.quantize_bottom.frozen = True
    return [p for p in model.parameters() if id(p) in trainable]


@dataclass
class TrainSummary:
    """What a run (or this invocation of it) did; also stored in the checkpoint's JSON."""

    run_dir: str
    step: int
    epoch: int
    notes_seen: int
    train_seconds: float
    notes_per_second: float
    last_losses: dict[str, float]
    stopped_because: str
    world_size: int
    device: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    """What a training function returns on every rank.

    Args:
        summary: counters, throughput and last losses (also in the checkpoint JSON).
        models: the trained modules of this rank (unwrapped from DDP), by component name.
    """

    summary: TrainSummary
    models: dict[str, torch.nn.Module]


def train_vqvae(config: VQVAETrainConfig) -> TrainResult:
    """Train (or resume) a VQ-VAE-2; returns the summary and the model on every rank."""
    from ..models.vqvae import VQVAE2, VQVAE2Config
    from . import modelio

    common.check_precision(config.precision)
    if not 0.0 <= config.bottom_dropout < 1.0:
        raise ValueError(f"bottom_dropout must be from 0 up to (not including) 1, got {config.bottom_dropout}")
    invoked = time.monotonic()     # --minutes counts from here, statistics/extraction included
    context = common.setup_distributed(config.device)
    try:
        common.seed_everything(config.seed)
        autocast = common.forward_autocast(config.precision, context.device)
        run_dir = Path(config.out)
        if context.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
        if config.cache is None:
            config = dataclasses.replace(config, cache=run_dir / DEFAULT_CACHE_DIR)
        train_set = open_split(config.corpus, "train", config.split_seed, config.cache)

        # --- resume or start: statistics and weights come from the checkpoint when there is one
        checkpoint = common.find_checkpoint_dir(run_dir)
        codes_of = None   # the weights SHA-256 of the VQ-VAE whose codes a decoder-only run keeps
        if checkpoint is not None:
            model, stats, metadata = modelio.load_vqvae(checkpoint, context.device, with_metadata=True)
            model_config = model.config
            size = metadata.get("size", "custom")
            codes_of = metadata.get("codes_of")
        elif config.decoder_from is not None:
            model, stats, metadata, source = modelio.load_vqvae_any(config.decoder_from, context.device)
            model_config = model.config
            size = metadata.get("size", "custom")
            codes_of = modelio.codes_identity(metadata)
            if codes_of is None:
                raise ValueError(f"{source}: its description has no weights digest, so the codes a "
                                 f"decoder-only run keeps could not be named")
            unknown = set(config.model_overrides) - {"decoder_refine"}
            if unknown:
                raise ValueError(f"a decoder-only run keeps its VQ-VAE's sizes; only decoder_refine may "
                                 f"change, not {', '.join(sorted(unknown))}")
            if config.model_overrides.get("decoder_refine", model_config.decoder_refine) != model_config.decoder_refine:
                model, model_config = _with_refinement(model, config.model_overrides["decoder_refine"])
                size = "custom"
        else:
            stats = stats_over_split(train_set, context, batch_size=config.batch_size, workers=config.workers)
            model_config = dataclasses.replace(VQVAE2Config.from_size(config.size), **config.model_overrides)
            size = config.size if not config.model_overrides else "custom"
            model = VQVAE2(model_config).to(context.device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)   # in place: the same parameters
        decoder_only = codes_of is not None
        trained = freeze_encoding(model) if decoder_only else list(model.parameters())
        optimizer = torch.optim.Adam(trained, lr=config.lr)
        state = common.TrainingState(extra={})
        if checkpoint is not None:
            state = common.load_training_state(checkpoint / common.TRAINING_STATE_FILE, {"vqvae": optimizer})
            for group in optimizer.param_groups:
                group["lr"] = config.lr   # an explicit --lr on resume wins
            if config.channels_last:
                # Adam's moments come back in the usual order: give them their weights' memory order
                for moments in optimizer.state.values():
                    for key, value in moments.items():
                        if torch.is_tensor(value) and value.dim() == 4:
                            moments[key] = value.contiguous(memory_format=torch.channels_last)

        ddp_model: torch.nn.Module = model
        if context.distributed:
            ddp_model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[context.device.index] if context.device.type == "cuda" else None)

        sampler = common.ResumableSampler(len(train_set), config.batch_size, context.rank, context.world_size,
                                          seed=config.seed)
        loader_kwargs = dict(batch_size=config.batch_size, sampler=sampler, num_workers=config.workers,
                             drop_last=len(train_set) >= config.batch_size * context.world_size,
                             persistent_workers=False, pin_memory=context.device.type == "cuda")
        batches_per_epoch = sampler.batches_per_epoch(loader_kwargs["drop_last"])
        total_steps = None
        if config.epochs is not None:
            total_steps = config.epochs * batches_per_epoch
        if config.max_steps is not None:
            total_steps = config.max_steps if total_steps is None else min(total_steps, config.max_steps)
        if config.lr_decay_steps < 0 or (config.lr_decay_steps and total_steps is None):
            raise ValueError(f"lr_decay_steps ({config.lr_decay_steps}) needs a run end to decay towards "
                             f"(--max-steps or --epochs) and must not be negative")

        control = common.StopControl(context, config.minutes, config.checkpoint_minutes, started=invoked)
        control.install_signal_handlers()
        logger = common.RunLogger(run_dir, context, total_steps, state.step, "vqvae")
        logger.message(f"vqvae ({config.size if checkpoint is None else 'resumed'}): "
                       f"{sum(p.numel() for p in model.parameters()):,} parameters, {len(train_set)} training "
                       f"notes, {batches_per_epoch} steps/epoch x {context.world_size} rank(s) on {context.device}"
                       + (f", resumed at step {state.step}" if checkpoint is not None else "")
                       + (f"; decoder only ({sum(p.numel() for p in trained):,} parameters), encoders and "
                          f"codebooks frozen: codes stay those of {codes_of[:12]}" if decoder_only else ""))

        def save(reason: str) -> None:
            summary = _summary(run_dir, state, last, reason, context)
            state.extra = {"config": _jsonable(asdict(config)), "summary": summary.to_dict()}
            if context.is_main:
                def write(folder: Path) -> None:
                    modelio.save_vqvae(folder, model, stats, summary.to_dict(), size=size, codes_of=codes_of,
                                       bottom_dropout=config.bottom_dropout)
                    common.save_training_state(folder / common.TRAINING_STATE_FILE, state, {"vqvae": optimizer})
                common.write_checkpoint_dir(run_dir, write)
                logger.record({"event": "checkpoint", "reason": reason, **summary.to_dict()})
            control.saved()

        last: dict[str, float] = {}
        stopped = "already done" if total_steps is not None and state.step >= total_steps else ""
        interval_start, interval_notes = time.monotonic(), 0
        while not stopped:
            sampler.set_epoch(state.epoch, state.batch_in_epoch)
            loader = torch.utils.data.DataLoader(train_set, **loader_kwargs)
            model.train()
            tick = time.monotonic()   # training time counts data loading, not checkpoints/validation
            for batch in loader:
                images = batch["image"].to(context.device, non_blocking=True)
                x = stats.normalize(images)
                if config.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                for group in optimizer.param_groups:
                    group["lr"] = common.decayed_lr(config.lr, state.step, total_steps, config.lr_decay_steps)
                drop = None
                if config.bottom_dropout:
                    drop = torch.rand(x.shape[0], device=x.device) < config.bottom_dropout
                with autocast():
                    output = ddp_model(x, drop)
                mse = reconstruction_loss(output.reconstruction.float(), x, config.magnitude_weight)
                loss = mse + output.commitment_loss
                if config.spectral_weight:
                    loss = loss + config.spectral_weight * spectral_convergence_loss(
                        stats.denormalize(output.reconstruction.float()), images)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

                state.step += 1
                state.batch_in_epoch += 1
                state.notes_seen += images.shape[0] * context.world_size
                interval_notes += images.shape[0] * context.world_size
                values = common.all_reduce_mean(
                    [mse.item(), output.commitment_loss.item(), float(output.top_perplexity),
                     float(output.bottom_perplexity)], context)
                last = {"loss/mse": values[0], "loss/commitment": values[1],
                        "codebook/top_perplexity": values[2], "codebook/bottom_perplexity": values[3]}
                now = time.monotonic()
                state.train_seconds += now - tick
                tick = now
                elapsed = now - interval_start
                logger.step(state.step, {**last, "speed/notes_per_s": interval_notes / max(elapsed, 1e-9)})
                if elapsed > 30:
                    interval_start, interval_notes = now, 0

                save_now, stop_now = control.poll()
                if total_steps is not None and state.step >= total_steps:
                    stopped = ("max steps" if config.max_steps is not None and state.step >= config.max_steps
                               else "epochs done")
                elif stop_now:
                    stopped = f"signal {control.signalled}" if control.signalled else "time budget"
                if stopped:
                    break
                if save_now:
                    _log_validation(model, stats, config, context, logger, state.step)
                    save("periodic")
                    tick = time.monotonic()
            else:
                state.epoch += 1
                state.batch_in_epoch = 0
                logger.record({"event": "epoch", "epoch": state.epoch, "step": state.step, **last})
        if stopped != "already done":
            _log_validation(model, stats, config, context, logger, state.step)
            save(stopped)
        logger.message(f"vqvae stopped ({stopped}) at step {state.step}, epoch {state.epoch}; "
                       f"checkpoint in {run_dir / common.CHECKPOINT_DIR}")
        logger.close()
        control.restore_signal_handlers()
        return TrainResult(_summary(run_dir, state, last, stopped, context), {"vqvae": model})
    finally:
        common.teardown_distributed(context)


def _with_refinement(model, stages: int):
    """A copy of a VQ-VAE with `stages` decoder refinement blocks (`VQVAE2Config.decoder_refine`),
    every weight it shares with `model` taken from it: added blocks start as the identity, so the copy
    decodes as `model` does; fewer blocks than `model` has is refused (it would change the sound)."""
    from ..models.vqvae import VQVAE2

    if stages < model.config.decoder_refine:
        raise ValueError(f"the VQ-VAE already has {model.config.decoder_refine} decoder refinement "
                         f"blocks; a decoder-only run can add blocks, not remove them (asked {stages})")
    new_config = dataclasses.replace(model.config, decoder_refine=stages)
    wider = VQVAE2(new_config).to(next(model.parameters()).device)
    missing, unexpected = wider.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not key.startswith("decoder_refine.") for key in missing):
        raise RuntimeError(f"refinement blocks changed more than themselves: missing {missing}, "
                           f"unexpected {unexpected}")
    return wider, new_config


def _summary(run_dir: Path, state: common.TrainingState, last: dict[str, float], reason: str,
             context: common.DistributedContext) -> TrainSummary:
    rate = state.notes_seen / state.train_seconds if state.train_seconds > 0 else 0.0
    return TrainSummary(run_dir=str(run_dir), step=state.step, epoch=state.epoch, notes_seen=state.notes_seen,
                        train_seconds=round(state.train_seconds, 2), notes_per_second=round(rate, 3),
                        last_losses={k: float(f"{v:.6g}") for k, v in last.items()}, stopped_because=reason,
                        world_size=context.world_size, device=str(context.device))


def reconstruction_loss(reconstruction: Tensor, x: Tensor, magnitude_weight: float = 1.0) -> Tensor:
    """MSE of a reconstruction [B, 2, F, T] against x, the log-power channel weighted `magnitude_weight`
    times the instantaneous-frequency one (the weights average 1; 1 is plain MSE, computed as such)."""
    if magnitude_weight == 1.0:
        return F.mse_loss(reconstruction, x)
    if not magnitude_weight > 0:
        raise ValueError(f"magnitude_weight must be > 0, got {magnitude_weight}")
    squared = (reconstruction - x).square().mean(dim=(0, 2, 3))   # per channel
    return (magnitude_weight * squared[0] + squared[1]) / (magnitude_weight + 1)


def spectral_convergence_loss(reconstruction: Tensor, image: Tensor) -> Tensor:
    """Mean over the batch of ||M̂ − M|| / ||M||, with M = exp(log power / 2) the Mel magnitudes of
    channel 0 of unnormalised images [B, 2, F, T] (the reconstruction's and the original's)."""
    magnitude = torch.exp(0.5 * image[:, 0].float())
    error = torch.exp(0.5 * reconstruction[:, 0]) - magnitude
    return (error.flatten(1).norm(dim=1) / magnitude.flatten(1).norm(dim=1).clamp_min(1e-8)).mean()


@torch.no_grad()
def _log_validation(model, stats, config: VQVAETrainConfig, context: common.DistributedContext,
                    logger: common.RunLogger, step: int) -> None:
    """Held-out reconstruction on `validation_notes` notes spread over the families (rank 0 only), for
    the curves: the normalised image's MSE; spectral convergence and log-spectral distance of the
    decoded audio (Mel-IF inverse, as `eval` computes them); each codemap's code perplexity; and how
    far silence shares one code (the paper: phase thresholding lets the VQ-VAE learn one code for
    silence), as the share of each map's wholly silent cells (every pixel at the threshold floor)
    that take the most common code among them. A run with bottom dropout also logs the spectral
    convergence of the notes decoded from their top codes alone."""
    if not context.is_main or config.validation_notes <= 0:
        return
    from ..data.roundtrip import select_spread, spectral_distances
    from .priors import code_usage

    held_out = open_split(config.corpus, "heldout", config.split_seed, config.cache, return_audio=True)
    index_of = {record.note: i for i, record in enumerate(held_out.records)}
    chosen = [index_of[r.note] for r in select_spread(held_out.records, config.validation_notes)]
    if not chosen:
        return
    threshold = getattr(held_out.representation, "phase_threshold", None)
    was_training = model.training
    model.eval()
    total, seen, lsd, sc, top_alone_sc = 0.0, 0, [], [], []
    codes_of: dict[str, list[torch.Tensor]] = {"top": [], "bottom": []}
    silent_codes: dict[str, list[torch.Tensor]] = {"top": [], "bottom": []}
    for start in range(0, len(chosen), config.batch_size):
        items = [held_out[i] for i in chosen[start:start + config.batch_size]]
        images = torch.stack([item["image"] for item in items])
        x = stats.normalize(images.to(context.device))
        output = model(x)
        reconstruction = output.reconstruction
        total += F.mse_loss(reconstruction, x, reduction="sum").item()
        seen += x.numel()
        audio = held_out.representation.inverse(stats.denormalize(reconstruction.float()).cpu()).numpy()
        originals = torch.stack([item["audio"] for item in items]).numpy()
        a, b = spectral_distances(originals, audio)
        lsd += a.tolist()
        sc += b.tolist()
        if config.bottom_dropout:   # what the top codes alone rebuild (`VQVAE2.decode_top`)
            alone = stats.denormalize(model.decode_top(output.top_codes).float()).cpu()
            top_alone_sc += spectral_distances(originals, held_out.representation.inverse(alone).numpy())[1].tolist()
        for layer, codes in (("top", output.top_codes), ("bottom", output.bottom_codes)):   # eval mode: no EMA
            codes = codes.cpu()
            codes_of[layer].append(codes)
            if threshold is not None:
                # a wholly silent cell: every pixel clamped to the phase threshold (no sound, no phase)
                loudest = F.max_pool2d(images[:, :1], images.shape[2] // codes.shape[1])[:, 0]
                silent_codes[layer].append(codes[loudest <= threshold + 1e-4])
    model.train(was_training)
    values = {"validation/mse": total / seen, "validation/spectral_convergence": sum(sc) / len(sc),
              "validation/lsd_db": sum(lsd) / len(lsd)}
    if top_alone_sc:
        values["validation/top_alone_spectral_convergence"] = sum(top_alone_sc) / len(top_alone_sc)
    for layer, codebook_size in zip(("top", "bottom"), model.config.codebook_sizes):
        every = torch.cat(codes_of[layer])
        values[f"validation/{layer}_perplexity"] = code_usage(every.numpy(), codebook_size)[0]
        if threshold is None:
            continue
        silent = torch.cat(silent_codes[layer])
        values[f"validation/{layer}_silent_cells"] = len(silent) / every.numel()
        if len(silent):
            values[f"validation/{layer}_silence_code_share"] = float(silent.unique(return_counts=True)[1].max()) / len(silent)
    logger.step(step, values, advance=0)
    logger.record({"event": "validation", "step": step, "notes": len(chosen),
                   **{key.split("/")[1]: round(value, 6) for key, value in values.items()}})


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """The config JSON the last checkpoint of a run was trained with (for export and the model card)."""
    return read_checkpoint_config(Path(run_dir) / common.CHECKPOINT_DIR)


def read_checkpoint_config(folder: Path) -> dict[str, Any]:
    """The config JSON the training state in a checkpoint folder records ({} when it records none)."""
    from safetensors import safe_open

    with safe_open(str(Path(folder) / common.TRAINING_STATE_FILE), framework="pt") as handle:
        return json.loads((handle.metadata() or {}).get("notono", "{}")).get("extra") or {}
