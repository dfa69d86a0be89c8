"""Train the two Transformer priors on codes of a trained VQ-VAE (NOTONO, Bazin et al., 2020): `notono-live train priors`.

Read top to bottom:
1. `extract_codes` encodes every note of the corpus ONCE with the trained VQ-VAE and writes
   RUN_DIR/codes.safetensors (int16 top/bottom maps, pitch and family indices, for the training and
   the held-out split, plus a JSON header naming the VQ-VAE and the split). A resumed run reuses it.
2. The loop trains the top prior with the inpainting masks of the paper (per batch p ~ U(0, 1), each
   token masked with probability p; the loss is on the masked tokens, the ones a sampler will ask
   for) and the bottom prior teacher-forced on the true top map. Both step on every batch, with their
   own Adam, so one time budget covers both.
Resumability, DDP, logging and the time budget are those of `common.py`, as in `vqvae.py`.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import codemaps, constants
from . import common
from .vqvae import DEFAULT_CACHE_DIR, TrainResult, _jsonable, _summary

CODES_FILE = "codes.safetensors"
CODES_FORMAT = "notono-codes"
CODES_VERSION = 1
SPLITS = ("train", "heldout")


@dataclass
class PriorsTrainConfig:
    """Settings of one `train priors` run.

    Args:
        corpus: NSynth-layout corpus folder the VQ-VAE was trained on.
        vqvae: a `train vqvae` run folder or a model folder holding a `vqvae` component.
        out: run folder (codes file, checkpoints, TensorBoard, log.jsonl). Re-using it resumes.
        size: prior size name ("lite" for a 2-core CPU, "reference" for the paper's d512 stacks).
        model_overrides: fields of `PriorConfig` to change from the size's defaults (tests).
        which: "both", "top" or "bottom".
        epochs / minutes / max_steps: when to stop (any that is set).
        batch_size: code maps per rank per step.
        lr: Adam learning rate.
        lr_decay_steps: over this many last steps before the run's end (max_steps or epochs, which
            must be set), the learning rate falls linearly towards 0 (`common.decayed_lr`): a
            cool-down for a run trained at a constant rate. 0: constant throughout.
        seed: seed of weights, epoch orders and masks.
        split_seed: seed of the 80/20 split (must match the VQ-VAE run and eval).
        cache: spectrogram cache folder used while extracting codes (None: the VQ-VAE run's cache
            when --vqvae is a run folder that has one, else no cache: codes are extracted once anyway).
        extraction_batch_size: notes per VQ-VAE forward during extraction.
        workers: DataLoader workers during extraction.
        device: "auto", "cpu", "cuda"...
        checkpoint_minutes: checkpoint at least this often.
        validation_maps: held-out maps whose losses are logged at each checkpoint.
        precision: "fp32", or "bf16" to run forward passes under bfloat16 autocast (weights and
            optimiser state stay fp32; measured 1.4x faster per step on a 2-core AVX512-BF16 CPU).
        condition_dropout: fraction of the maps in each batch whose pitch and family are replaced
            by the prior's learned unconditioned input, so that sampling can use classifier-free
            guidance. Above 0 it gives the priors that input; resuming a run whose priors lack it
            adds it (initialised to the mean label embedding) and keeps everything else, the
            optimiser state included.
        label_layers: give new priors the labels in every layer as well (`PriorConfig.label_layers`,
            adaptive layer norm); a resumed prior keeps the architecture it was saved with.
        bottom_group: bottom cells per decoder step of a new bottom prior (`PriorConfig.bottom_group`);
            a resumed prior keeps the architecture it was saved with.
        pitch_comb: give new priors where the pitch's harmonics fall under each position
            (`PriorConfig.pitch_comb`), and add it to priors started from `init_from`; a resumed
            prior keeps the architecture it was saved with.
        previous_column: give a new bottom prior the code of the same band one column earlier as
            an input (`PriorConfig.previous_column`), and add it to a bottom
            prior started from `init_from` (its embedding zero, so it starts as that prior); a
            resumed prior keeps the architecture it was saved with.
        init_from: a model folder or `train priors` run folder whose priors a new run starts from
            (fine-tuning; they must model the codes of `vqvae`); ignored once the run has a
            checkpoint of its own.
    """

    corpus: Path
    vqvae: Path
    out: Path
    size: str = "lite"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    which: str = "both"
    epochs: int | None = None
    minutes: float | None = None
    max_steps: int | None = None
    batch_size: int = 32
    lr: float = 3e-4
    lr_decay_steps: int = 0
    seed: int = 0
    split_seed: int = constants.DEFAULT_SPLIT_SEED
    cache: Path | None = None
    extraction_batch_size: int = 16
    workers: int = 0
    device: str = "auto"
    checkpoint_minutes: float = 5.0
    validation_maps: int = 256
    precision: str = "fp32"
    condition_dropout: float = 0.0
    label_layers: bool = False
    bottom_group: int = 1
    pitch_comb: bool = False
    previous_column: bool = False
    init_from: Path | None = None


# --- Codes file -----------------------------------------------------------------------------

@dataclass
class CodeSet:
    """The codes of one split, in memory.

    Args:
        top: [N, 32, 4] int64 codes.
        bottom: [N, 64, 8] int64 codes.
        pitch: [N] MIDI pitches.
        family: [N] family indices (order of `constants.FAMILIES`).
    """

    top: torch.Tensor
    bottom: torch.Tensor
    pitch: torch.Tensor
    family: torch.Tensor

    def __len__(self) -> int:
        return int(self.top.shape[0])

    def top_tokens(self) -> torch.Tensor:
        return torch.from_numpy(codemaps.flatten("top", self.top.numpy()).copy())

    def bottom_tokens(self) -> torch.Tensor:
        return torch.from_numpy(codemaps.flatten("bottom", self.bottom.numpy()).copy())


def extract_codes(vqvae_path: Path, corpus: Path, out_file: Path, split_seed: int = constants.DEFAULT_SPLIT_SEED,
                  cache: Path | None = None, batch_size: int = 16, workers: int = 0,
                  context: common.DistributedContext | None = None) -> Path:
    """Encode both splits with the VQ-VAE and write the codes file (rank 0 writes; ranks share work).

    Each rank encodes every world_size-th batch; rank 0 gathers the codes and writes them in corpus
    order, so a multi-GPU job extracts in 1/N of the time.
    """
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from . import modelio
    from .data import open_split

    context = context or common.DistributedContext()
    out_file = Path(out_file)
    model, stats, vqvae_metadata, source = modelio.load_vqvae_any(vqvae_path, context.device)
    model.eval()
    tensors: dict[str, torch.Tensor] = {}
    names: dict[str, list[str]] = {}
    for split in SPLITS:
        dataset = open_split(corpus, split, split_seed, cache)
        indices = list(range(len(dataset)))
        batches = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
        mine = batches[context.rank::context.world_size]
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(dataset, [i for batch in mine for i in batch]),
            batch_size=batch_size, shuffle=False, num_workers=workers)
        parts: dict[str, list[torch.Tensor]] = {"top": [], "bottom": [], "pitch": [], "family": []}
        with torch.no_grad():
            for batch in tqdm(loader, desc=f"codes {split}", dynamic_ncols=True,
                              disable=not context.is_main or common.progress_disabled()):
                top, bottom = model.encode_codes(stats.normalize(batch["image"].to(context.device)))
                parts["top"].append(top.to("cpu", torch.int16))
                parts["bottom"].append(bottom.to("cpu", torch.int16))
                parts["pitch"].append(batch["pitch"].to(torch.int16))
                parts["family"].append(batch["family_index"].to(torch.int16))
        local = {k: (torch.cat(v) if v else torch.zeros((0,), dtype=torch.int16)) for k, v in parts.items()}
        gathered = _gather_batches(local, [len(b) for b in mine], context)
        if context.is_main:
            # undo the round-robin over ranks: batch j came from rank j % world_size
            ordered = {key: [] for key in local}
            cursors = [dict.fromkeys(local, 0) for _ in range(context.world_size)]
            for j, batch in enumerate(batches):
                rank = j % context.world_size
                for key in local:
                    start = cursors[rank][key]
                    ordered[key].append(gathered[rank][key][start:start + len(batch)])
                    cursors[rank][key] = start + len(batch)
            for key, chunks in ordered.items():
                tensors[f"{split}.{key}"] = torch.cat(chunks).contiguous() if chunks else torch.zeros(
                    (0,) + _SHAPES[key], dtype=torch.int16)
            names[split] = [record.note for record in dataset.records]
    if context.is_main:
        header = {"format": CODES_FORMAT, "version": CODES_VERSION, "vqvae": str(source),
                  "vqvae_sha256": modelio.codes_identity(vqvae_metadata),
                  "corpus": str(corpus), "split_seed": split_seed, "names": names,
                  "codebook_sizes": list(model.config.codebook_sizes)}
        temporary = out_file.with_suffix(".tmp")
        out_file.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(temporary), metadata={"notono": json.dumps(header)})
        temporary.replace(out_file)
    if context.distributed:
        torch.distributed.barrier()
    return out_file


_SHAPES = {"top": constants.TOP_SHAPE, "bottom": constants.BOTTOM_SHAPE, "pitch": (), "family": ()}


def _gather_batches(local: dict[str, torch.Tensor], sizes: list[int],
                    context: common.DistributedContext) -> list[dict[str, torch.Tensor]]:
    if not context.distributed:
        return [local]
    # object gather moves the (small, int16) code arrays as transport only; nothing is stored pickled
    gathered: list[Any] = [None] * context.world_size
    torch.distributed.all_gather_object(gathered, {k: v.numpy() for k, v in local.items()})
    return [{k: torch.from_numpy(v) for k, v in part.items()} for part in gathered]


def load_codes(path: Path) -> tuple[dict[str, CodeSet], dict[str, Any]]:
    """Read a codes file into one `CodeSet` per split; refuses a file that is not one."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"codes file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = json.loads((handle.metadata() or {}).get("notono", "{}"))
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (json.JSONDecodeError, Exception) as error:  # noqa: BLE001 - safetensors has its own errors
        raise ValueError(f"{path}: not a readable codes file ({error})") from None
    if header.get("format") != CODES_FORMAT or header.get("version") != CODES_VERSION:
        raise ValueError(f"{path}: format {header.get('format')!r} version {header.get('version')!r} "
                         f"is not a codes file this version reads")
    sets = {}
    for split in SPLITS:
        try:
            sets[split] = CodeSet(*(tensors[f"{split}.{key}"].long() for key in ("top", "bottom", "pitch", "family")))
        except KeyError as error:
            raise ValueError(f"{path}: missing tensor {error.args[0]}") from None
    return sets, header


# --- Losses ---------------------------------------------------------------------------------

def random_keep_mask(batch: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """The paper's training masks: one p ~ U(0, 1) per batch, each top token masked with probability p.

    Returns keep_mask [B, 128] (True = kept/visible). At least one token per row is masked so every
    row contributes to the loss.
    """
    p = torch.rand((), generator=generator)
    masked = torch.rand((batch, constants.TOP_TOKENS), generator=generator) < p
    forced = torch.randint(0, constants.TOP_TOKENS, (batch,), generator=generator)
    masked[torch.arange(batch), forced] = True
    return (~masked).to(device)


def top_prior_loss(model, tokens: torch.Tensor, keep: torch.Tensor, pitch_index: torch.Tensor,
                   family_index: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the top prior on the masked positions (the ones inpainting samples);
    drop: [B] bool, rows trained without their labels (condition dropout)."""
    from ..models.priors import prior_loss

    return prior_loss(model(tokens, keep, pitch_index, family_index, drop), tokens, ~keep)


def bottom_prior_loss(model, bottom_tokens: torch.Tensor, top_tokens: torch.Tensor, pitch_index: torch.Tensor,
                      family_index: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
    """Teacher-forced cross-entropy of the bottom prior given the true top map (drop: as above)."""
    from ..models.priors import prior_loss

    return prior_loss(model(bottom_tokens, top_tokens, pitch_index, family_index, drop), bottom_tokens)


def _parameter_groups(model) -> list[dict[str, Any]]:
    """Adam parameter groups of a prior: the unconditioned input, when it has one, in a group of its
    own after the rest, so that a run which adds it on resume can load the earlier optimiser state."""
    null = getattr(model, "null_condition", None)
    if null is None:
        return [{"params": list(model.parameters())}]
    extra = {id(p) for p in null.parameters()}
    return [{"params": [p for p in model.parameters() if id(p) not in extra]},
            {"params": list(null.parameters())}]


def _upgraded(model, what: str, added: set[str], **changes):
    """A copy of a prior with its config changed by `changes`, every weight it had kept; `added`
    names the weights the change brings, which keep the new prior's initialisation."""
    import dataclasses

    upgraded = type(model)(dataclasses.replace(model.config, **changes)).to(model.head.weight.device)
    missing, unexpected = upgraded.load_state_dict(model.state_dict(), strict=False)
    if unexpected or set(missing) != added:
        raise ValueError(f"cannot add {what}: missing {missing}, unexpected {unexpected}")
    return upgraded


def _kept_shape_notes(name: str, model, overrides: dict[str, Any], how: str) -> list[str]:
    """What a resumed or --init-from prior keeps of its own shape against the layer counts asked for."""
    return [f"the {name} prior ({how}) has {getattr(model.config, key)} {key.replace('_', ' ')} and keeps them; "
            f"--{key.replace('_', '-')} {value} only shapes new priors"
            for key, value in overrides.items() if key.endswith("_layers") and getattr(model.config, key) != value]


def _add_unconditioned_input(model):
    """A copy of a prior trained without condition dropout, with the unconditioned input added and
    initialised to the mean pitch and family embeddings; every other weight is kept."""
    upgraded = _upgraded(model, "an unconditioned input", {"null_condition.weight"}, unconditional=True)
    with torch.no_grad():
        upgraded.null_condition.weight[0] = torch.cat([model.pitch_embedding.weight.mean(0),
                                                       model.family_embedding.weight.mean(0)])
    return upgraded


def _add_pitch_comb(model):
    """A copy of a prior without the pitch comb, with it added (its map zero, so the copy computes
    what the prior did); every other weight is kept."""
    return _upgraded(model, "the pitch comb", {"comb.weight", "comb.bias"}, pitch_comb=True)


def _add_previous_column(model):
    """A copy of a bottom prior without the previous column's input, with it added (zero: its
    embedding, or with groups the map of a group's embeddings, so the copy computes what the prior
    did); every other weight is kept."""
    added = {"previous_column_embedding.weight"}
    if model.config.bottom_group > 1:
        added |= {"previous_column_input.weight", "previous_column_input.bias"}
    upgraded = _upgraded(model, "the previous column's input", added, previous_column=True)
    with torch.no_grad():
        zeroed = (upgraded.previous_column_embedding if upgraded.previous_column_input is None
                  else upgraded.previous_column_input)
        for parameter in zeroed.parameters():
            parameter.zero_()
    return upgraded


# --- Training loop --------------------------------------------------------------------------

def train_priors(config: PriorsTrainConfig) -> TrainResult:
    """Extract codes if needed, then train (or resume) the priors; returns summary and models on every rank."""
    from ..models.priors import BottomPrior, PriorConfig, TopPrior
    from . import modelio

    if config.which not in ("both", "top", "bottom"):
        raise ValueError(f"--which must be 'both', 'top' or 'bottom', got {config.which!r}")
    common.check_precision(config.precision)
    if not (0.0 <= config.condition_dropout < 1.0):
        raise ValueError(f"--condition-dropout must lie in [0, 1), got {config.condition_dropout}")
    invoked = time.monotonic()     # --minutes counts from here, statistics/extraction included
    context = common.setup_distributed(config.device)
    try:
        common.seed_everything(config.seed)
        autocast = common.forward_autocast(config.precision, context.device)
        run_dir = Path(config.out)
        if context.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
        if context.distributed:
            torch.distributed.barrier()
        codes_path = run_dir / CODES_FILE
        if not codes_path.is_file():
            cache = config.cache
            if cache is None and (Path(config.vqvae) / DEFAULT_CACHE_DIR).is_dir():
                cache = Path(config.vqvae) / DEFAULT_CACHE_DIR     # the VQ-VAE run's images, already computed
            extract_codes(config.vqvae, config.corpus, codes_path, config.split_seed, cache,
                          config.extraction_batch_size, config.workers, context)
        sets, codes_header = load_codes(codes_path)
        train_set = sets["train"]
        top_tokens_all = train_set.top_tokens()
        bottom_tokens_all = train_set.bottom_tokens()
        pitch_all = train_set.pitch - constants.PITCH_MIN
        family_all = train_set.family
        if len(train_set) == 0:
            raise ValueError(f"{codes_path}: the training split holds no notes")
        if int(pitch_all.min()) < 0 or int(pitch_all.max()) >= constants.NUM_PITCHES:
            raise ValueError(f"{codes_path}: pitches {int(train_set.pitch.min())}..{int(train_set.pitch.max())} "
                             f"fall outside {constants.PITCH_MIN}-{constants.PITCH_MAX}")

        codes_info = {key: codes_header.get(key) for key in ("vqvae", "vqvae_sha256", "split_seed", "corpus")}
        # files written before the header named them hold codes of two 512-code codebooks
        codebook_sizes = tuple(codes_header.get("codebook_sizes", (constants.CODEBOOK_SIZE,) * 2))
        wanted = ("top", "bottom") if config.which == "both" else (config.which,)
        checkpoint = common.find_checkpoint_dir(run_dir)
        models: dict[str, torch.nn.Module] = {}
        size = config.size if not config.model_overrides else "custom"
        upgraded: set[str] = set()     # priors given an unconditioned input on this resume
        logger_notes: list[str] = []   # said once the logger exists
        for name in wanted:
            if checkpoint is not None and modelio.has_prior(checkpoint, name):
                models[name], metadata = modelio.load_prior(checkpoint, name, context.device, with_metadata=True)
                size = metadata.get("size", size)
                if config.label_layers and not models[name].config.label_layers:
                    logger_notes.append(f"the {name} prior was saved without --label-layers and keeps its "
                                        f"architecture; --label-layers only shapes new priors")
                if config.pitch_comb and not models[name].config.pitch_comb:
                    logger_notes.append(f"the {name} prior was saved without --pitch-comb and keeps its "
                                        f"architecture; start a new run with --init-from to add it")
                if config.previous_column and name == "bottom" and not models[name].config.previous_column:
                    logger_notes.append("the bottom prior was saved without --previous-column and keeps its "
                                        "architecture; start a new run with --init-from to add it")
                if config.condition_dropout > 0 and models[name].null_condition is None:
                    models[name] = _add_unconditioned_input(models[name])
                    upgraded.add(name)
                logger_notes += _kept_shape_notes(name, models[name], config.model_overrides, "resumed")
            elif config.init_from is not None:
                source = common.find_checkpoint_dir(Path(config.init_from)) or Path(config.init_from)
                if not modelio.has_prior(source, name):
                    raise ValueError(f"--init-from {config.init_from}: no {name} prior there (a model folder "
                                     f"or a `train priors` run folder)")
                models[name], metadata = modelio.load_prior(source, name, context.device, with_metadata=True)
                size = metadata.get("size", size)
                logger_notes.append(f"the {name} prior starts from {source}")
                if config.condition_dropout > 0 and models[name].null_condition is None:
                    models[name] = _add_unconditioned_input(models[name])
                if config.pitch_comb and not models[name].config.pitch_comb:
                    models[name] = _add_pitch_comb(models[name])
                    logger_notes.append(f"added the pitch comb to the {name} prior")
                if config.previous_column and name == "bottom" and not models[name].config.previous_column:
                    models[name] = _add_previous_column(models[name])
                    logger_notes.append("added the previous column's input to the bottom prior")
                logger_notes += _kept_shape_notes(name, models[name], config.model_overrides, "from --init-from")
            else:
                overrides = dict(config.model_overrides)
                if config.condition_dropout > 0:
                    overrides["unconditional"] = True
                if config.label_layers:
                    overrides["label_layers"] = True
                if config.bottom_group != 1:
                    overrides["bottom_group"] = config.bottom_group
                if config.pitch_comb:
                    overrides["pitch_comb"] = True
                if config.previous_column and name == "bottom":
                    overrides["previous_column"] = True
                overrides.update(_vocabulary(name, codebook_sizes))
                prior_config = _prior_config(PriorConfig, config.size, overrides)
                models[name] = (TopPrior if name == "top" else BottomPrior)(prior_config).to(context.device)
        for name, model in models.items():
            _check_vocabulary(name, model, codebook_sizes, codes_path)
        groups = {name: _parameter_groups(model) for name, model in models.items()}
        optimizers = {name: torch.optim.Adam(groups[name][:1] if name in upgraded else groups[name], lr=config.lr)
                      for name in models}
        state = common.TrainingState(extra={})
        if checkpoint is not None:
            state = common.load_training_state(checkpoint / common.TRAINING_STATE_FILE, optimizers)
        for name in upgraded:
            optimizers[name].add_param_group(groups[name][1])
        if checkpoint is not None:
            for optimizer in optimizers.values():
                for group in optimizer.param_groups:
                    group["lr"] = config.lr
        wrapped = {name: (torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[context.device.index] if context.device.type == "cuda" else None)
            if context.distributed else model) for name, model in models.items()}

        sampler = common.ResumableSampler(len(train_set), config.batch_size, context.rank, context.world_size,
                                          seed=config.seed)
        drop_last = len(train_set) >= config.batch_size * context.world_size
        batches_per_epoch = max(1, sampler.batches_per_epoch(drop_last))
        total_steps = None if config.epochs is None else config.epochs * batches_per_epoch
        if config.max_steps is not None:
            total_steps = config.max_steps if total_steps is None else min(total_steps, config.max_steps)
        if config.lr_decay_steps < 0 or (config.lr_decay_steps and total_steps is None):
            raise ValueError(f"lr_decay_steps ({config.lr_decay_steps}) needs a run end to decay towards "
                             f"(--max-steps or --epochs) and must not be negative")
        # masks: a generator per rank, re-seeded from (seed, step, rank) so a resume draws the same masks
        mask_generator = torch.Generator()

        control = common.StopControl(context, config.minutes, config.checkpoint_minutes, started=invoked)
        control.install_signal_handlers()
        logger = common.RunLogger(run_dir, context, total_steps, state.step, "priors")
        counts = ", ".join(f"{n} {sum(p.numel() for p in m.parameters()):,}" for n, m in models.items())
        logger.message(f"priors ({counts} parameters): {len(train_set)} training maps, {batches_per_epoch} "
                       f"steps/epoch x {context.world_size} rank(s) on {context.device}"
                       + (f", resumed at step {state.step}" if checkpoint is not None else "")
                       + (f"; added an unconditioned input to {', '.join(sorted(upgraded))}" if upgraded else "")
                       + (f"; condition dropout {config.condition_dropout:g}" if config.condition_dropout else ""))
        # which maps train without labels: a generator per rank, re-seeded per step like the masks
        drop_generator = torch.Generator()
        idle = [name for name, model in models.items() if model.null_condition is not None]
        if idle and config.condition_dropout == 0:
            logger.message(f"note: {', '.join(idle)} prior(s) have an unconditioned input but "
                           f"--condition-dropout is 0, so it is not trained in this run")
        for note in logger_notes:
            logger.message(f"note: {note}")

        def save(reason: str) -> None:
            summary = _summary(run_dir, state, last, reason, context)
            state.extra = {"config": _jsonable(asdict(config)), "summary": summary.to_dict(), "codes": codes_info}
            if context.is_main:
                def write(folder: Path) -> None:
                    for name, model in models.items():
                        modelio.save_prior(folder, model, name, summary.to_dict(), size=size, codes=codes_info)
                    common.save_training_state(folder / common.TRAINING_STATE_FILE, state, optimizers)
                common.write_checkpoint_dir(run_dir, write)
                logger.record({"event": "checkpoint", "reason": reason, **summary.to_dict()})
            control.saved()

        last: dict[str, float] = {}
        stopped = "already done" if total_steps is not None and state.step >= total_steps else ""
        interval_start, interval_notes = time.monotonic(), 0
        while not stopped:
            sampler.set_epoch(state.epoch, state.batch_in_epoch)
            indices = list(sampler)
            for model in models.values():
                model.train()
            tick = time.monotonic()
            for start in range(0, len(indices), config.batch_size):
                chosen = torch.tensor(indices[start:start + config.batch_size])
                if drop_last and len(chosen) < config.batch_size:
                    break
                top = top_tokens_all[chosen].to(context.device)
                pitch = pitch_all[chosen].to(context.device)
                family = family_all[chosen].to(context.device)
                values: dict[str, float] = {}
                lr = common.decayed_lr(config.lr, state.step, total_steps, config.lr_decay_steps)
                for optimizer in optimizers.values():
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                drop = None
                if any(model.null_condition is not None for model in models.values()):
                    # all-False rows still route through the unconditioned input, so DDP sees it used
                    drop_generator.manual_seed((config.seed * 1_000_003 + state.step) * 64 + 32 + context.rank)
                    drop = (torch.rand(len(chosen), generator=drop_generator)
                            < config.condition_dropout).to(context.device)
                if "top" in models:
                    mask_generator.manual_seed((config.seed * 1_000_003 + state.step) * 64 + context.rank)
                    keep = random_keep_mask(len(chosen), mask_generator, context.device)
                    with autocast():
                        loss = top_prior_loss(wrapped["top"], top, keep, pitch, family,
                                              drop if models["top"].null_condition is not None else None)
                    optimizers["top"].zero_grad(set_to_none=True)
                    loss.backward()
                    optimizers["top"].step()
                    values["loss/top"] = loss.item()
                if "bottom" in models:
                    bottom = bottom_tokens_all[chosen].to(context.device)
                    with autocast():
                        loss = bottom_prior_loss(wrapped["bottom"], bottom, top, pitch, family,
                                                 drop if models["bottom"].null_condition is not None else None)
                    optimizers["bottom"].zero_grad(set_to_none=True)
                    loss.backward()
                    optimizers["bottom"].step()
                    values["loss/bottom"] = loss.item()

                state.step += 1
                state.batch_in_epoch += 1
                state.notes_seen += len(chosen) * context.world_size
                interval_notes += len(chosen) * context.world_size
                last = dict(zip(values, common.all_reduce_mean(list(values.values()), context)))
                now = time.monotonic()
                state.train_seconds += now - tick
                tick = now
                elapsed = now - interval_start
                logger.step(state.step, {**last, "speed/maps_per_s": interval_notes / max(elapsed, 1e-9)})
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
                    _log_validation(models, sets["heldout"], config, context, logger, state.step)
                    save("periodic")
                    tick = time.monotonic()
            if not stopped:
                state.epoch += 1
                state.batch_in_epoch = 0
                logger.record({"event": "epoch", "epoch": state.epoch, "step": state.step, **last})
        if stopped != "already done":
            _log_validation(models, sets["heldout"], config, context, logger, state.step)
            save(stopped)
        logger.message(f"priors stopped ({stopped}) at step {state.step}, epoch {state.epoch}; "
                       f"checkpoint in {run_dir / common.CHECKPOINT_DIR}")
        logger.close()
        control.restore_signal_handlers()
        return TrainResult(_summary(run_dir, state, last, stopped, context),
                           {f"{name}_prior": model for name, model in models.items()})
    finally:
        common.teardown_distributed(context)


def _vocabulary(name: str, codebook_sizes: tuple[int, int]) -> dict[str, Any]:
    """The `PriorConfig` fields that give prior `name` the VQ-VAE's codebook sizes (top, bottom)."""
    top, bottom = codebook_sizes
    if name == "top":
        return {"codebook_size": top}
    return {"codebook_size": bottom, "top_codebook_size": None if top == bottom else top}


def _check_vocabulary(name: str, model: torch.nn.Module, codebook_sizes: tuple[int, int], codes_path: Path) -> None:
    """Refuse a resumed or --init-from prior whose vocabulary is not that of the codes it would learn."""
    config = model.config
    have = (config.codebook_size,) if name == "top" else (config.context_codebook_size, config.codebook_size)
    want = codebook_sizes[:1] if name == "top" else codebook_sizes
    if tuple(have) != tuple(want):
        layers = "top" if name == "top" else "top/bottom"
        raise ValueError(f"the {name} prior reads codebooks of {'/'.join(map(str, have))} codes, but the codes "
                         f"in {codes_path} come from codebooks of {'/'.join(map(str, want))} ({layers}): "
                         f"train a new {name} prior on them")


def _prior_config(config_class, size: str, overrides: dict[str, Any]):
    import dataclasses

    base = config_class.from_size(size)
    return dataclasses.replace(base, **overrides) if overrides else base


@torch.no_grad()
def evaluate_priors(models: dict[str, torch.nn.Module], codes: CodeSet, device: torch.device,
                    batch_size: int = 64, limit: int | None = None, seed: int = 1234) -> dict[str, float]:
    """Held-out cross-entropy (nats/token) of each prior; top with the training mask distribution.

    A prior with an unconditioned input (condition dropout) also gets `NAME_unconditioned`, its
    cross-entropy without the labels: the gap to `NAME` is what pitch and family tell it.
    """
    count = len(codes) if limit is None else min(limit, len(codes))
    if count == 0:
        return {}
    generator = torch.Generator().manual_seed(seed)
    top_all, bottom_all = codes.top_tokens()[:count], codes.bottom_tokens()[:count]
    pitch_all, family_all = codes.pitch[:count] - constants.PITCH_MIN, codes.family[:count]
    unconditioned = [name for name, model in models.items() if getattr(model, "null_condition", None) is not None]
    totals = dict.fromkeys(list(models) + [f"{name}_unconditioned" for name in unconditioned], 0.0)
    for model in models.values():
        model.eval()
    batches = 0
    for start in range(0, count, batch_size):
        top = top_all[start:start + batch_size].to(device)
        pitch, family = pitch_all[start:start + batch_size].to(device), family_all[start:start + batch_size].to(device)
        everyone = torch.ones(len(top), dtype=torch.bool, device=device)

        def measured(name: str) -> list[tuple[str, torch.Tensor | None]]:
            # (total to add to, rows without labels): with the labels, and without them if it can
            return [(name, None)] + ([(f"{name}_unconditioned", everyone)] if name in unconditioned else [])

        if "top" in models:
            keep = random_keep_mask(len(top), generator, device)
            for key, drop in measured("top"):
                totals[key] += top_prior_loss(models["top"], top, keep, pitch, family, drop).item()
        if "bottom" in models:
            bottom = bottom_all[start:start + batch_size].to(device)
            for key, drop in measured("bottom"):
                totals[key] += bottom_prior_loss(models["bottom"], bottom, top, pitch, family, drop).item()
        batches += 1
    for model in models.values():
        model.train()
    return {name: total / batches for name, total in totals.items()}


def _log_validation(models, heldout: CodeSet, config: PriorsTrainConfig, context: common.DistributedContext,
                    logger: common.RunLogger, step: int) -> None:
    if not context.is_main or config.validation_maps <= 0 or len(heldout) == 0:
        return
    losses = evaluate_priors(models, heldout, context.device, limit=config.validation_maps)
    logger.step(step, {f"validation/{name}": value for name, value in losses.items()}, advance=0)


def code_usage(codes: np.ndarray, codebook_size: int = constants.CODEBOOK_SIZE) -> tuple[float, float]:
    """(perplexity, fraction of codes used) of a set of codes of one map."""
    counts = np.bincount(np.asarray(codes).ravel(), minlength=codebook_size).astype(np.float64)
    probs = counts / max(counts.sum(), 1.0)
    nonzero = probs[probs > 0]
    return float(np.exp(-(nonzero * np.log(nonzero)).sum())), float((counts > 0).mean())
