"""`notono-live train vqvae | priors | export`.

Every training subcommand runs unchanged as one process or under torchrun, e.g.
``torchrun --nproc_per_node=4 -m notono_live train vqvae --corpus data/corpus --out runs/vqvae``.
Re-running a command on the same --out folder resumes from its last checkpoint.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be from 0 up to (not including) 1, got {value}")
    return value


def _add_common(parser: argparse.ArgumentParser, batch_size: int) -> None:
    parser.add_argument("--corpus", type=Path, required=True, help="NSynth-layout corpus folder")
    parser.add_argument("--out", type=Path, required=True,
                        help="run folder (checkpoints, TensorBoard, log.jsonl); an existing run is resumed")
    parser.add_argument("--size", default="lite", choices=("lite", "small", "reference", "tiny"),
                        help="model size: lite (2-core CPU), small (the lite VQ-VAE with priors sized for "
                             "real-time sampling on a 2-core CPU), reference (paper), tiny (tests)")
    parser.add_argument("--epochs", type=int, default=None, help="stop after this many epochs in all")
    parser.add_argument("--minutes", type=float, default=None, help="time budget of this invocation")
    parser.add_argument("--max-steps", type=int, default=None, help="stop at this global step")
    parser.add_argument("--batch-size", type=int, default=batch_size, help="notes per process per step")
    parser.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate (paper: 3e-4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and data order")
    parser.add_argument("--lr-decay-steps", type=int, default=0, metavar="N",
                        help="cool-down: over the last N steps before --max-steps (or --epochs) the learning "
                             "rate falls linearly towards 0; resumes like the rest (default 0: constant)")
    parser.add_argument("--split-seed", type=int, default=None,
                        help="seed of the 80/20 split (default: the project's, as eval uses)")
    parser.add_argument("--cache", type=Path, default=None, help="spectrogram cache folder")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (torchrun: cuda:LOCAL_RANK)")
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0, help="checkpoint at least this often")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="bf16: forward passes under bfloat16 autocast (faster where the hardware has bf16 "
                             "arithmetic, e.g. AVX512-BF16 CPUs); weights and optimiser state stay fp32, and so "
                             "does the VQ-VAE's quantiser")


def register(subparsers) -> None:
    train = subparsers.add_parser("train", help="train the VQ-VAE, the priors, export a model folder",
                                  description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = train.add_subparsers(dest="train_command", metavar="WHAT")

    vqvae = commands.add_parser("vqvae", help="train the VQ-VAE-2 on a corpus (resumable, torchrun-ready)")
    _add_common(vqvae, batch_size=16)
    vqvae.add_argument("--validation-notes", type=int, default=64,
                       help="held-out notes whose reconstruction (MSE, SC, LSD) and code perplexities are "
                            "logged at each checkpoint")
    vqvae.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                       help="channels-last memory order for the convolutions (default on: 1.17x faster on "
                            "the development CPU)")
    vqvae.add_argument("--magnitude-weight", type=float, default=1.0,
                       help="weight of the log-power channel in the reconstruction loss, against 1 for the "
                            "instantaneous frequency (1: plain MSE, the paper's; SC and LSD score the "
                            "magnitude only)")
    vqvae.add_argument("--spectral-weight", type=float, default=0.0,
                       help="weight of a spectral-convergence term on the Mel magnitudes added to the loss "
                            "(0: none, the paper's)")
    vqvae.add_argument("--bottom-dropout", type=_share, default=0.0, metavar="SHARE",
                       help="share of each batch's notes decoded from their top codes alone, so the top "
                            "codes carry more of the sound (0: none, the paper's)")
    vqvae.add_argument("--bottom-codebook-size", type=_positive_int, default=None, metavar="CODES",
                       help="codes of the bottom codebook (default: 512, as the top's); a new run only, "
                            "a resumed one keeps its own")
    vqvae.add_argument("--decoder-refine", type=int, choices=(0, 1, 2, 3), default=None, metavar="STAGES",
                       help="a residual block after each of the decoder's first STAGES upsampling stages (ours; "
                            "0 to 3, default 0). With --decoder-from, added to that decoder as the identity, "
                            "so the run starts from its reconstructions; a new run only, a resumed one keeps "
                            "its own. Decoding costs more: 2 stages add about 3 ms per note on the "
                            "development CPU, and bought nothing measurable on the shipped decoder "
                            "(docs/training.md)")
    vqvae.add_argument("--decoder-from", type=Path, default=None, metavar="VQVAE",
                       help="start from this trained VQ-VAE (run or model folder) and train its decoder only: "
                            "encoders and codebooks stay frozen, so codes, and priors trained on them, stay valid")
    vqvae.set_defaults(func=_run_vqvae)

    priors = commands.add_parser("priors", help="extract codes once, then train the top and bottom priors")
    _add_common(priors, batch_size=32)
    priors.add_argument("--vqvae", type=Path, required=True,
                        help="`train vqvae` run folder, or a model folder with a vqvae component")
    priors.add_argument("--which", choices=("both", "top", "bottom"), default="both")
    priors.add_argument("--extraction-batch-size", type=int, default=16)
    priors.add_argument("--condition-dropout", type=float, default=0.0,
                        help="fraction of maps trained without pitch and family, so that sampling can "
                             "use classifier-free guidance (e.g. 0.15; resuming adds the input it needs)")
    priors.add_argument("--label-layers", action="store_true",
                        help="new priors also get pitch and family in every layer (adaptive layer norm), "
                             "not only by concatenation to the inputs")
    priors.add_argument("--bottom-group", type=int, choices=(1, 2, 4), default=1,
                        help="bottom cells a new bottom prior decodes per step: 4 runs its decoder 128 steps "
                             "instead of 512 when sampling, each cell still conditioned on every earlier one "
                             "(ours, for real-time sampling; the paper uses 1). Measured on the shipped VQ-VAE's "
                             "codes: groups of 4 miss the drop in held-out loss that one cell per step shows "
                             "after about 500 steps (docs/training.md)")
    priors.add_argument("--pitch-comb", action="store_true",
                        help="new priors also get, at each position, where the pitch's harmonics fall in the "
                             "Mel rows under it (ours; models.pitch_comb); with --init-from, added to those priors")
    priors.add_argument("--previous-column", action="store_true",
                        help="a new bottom prior also gets, at each cell, the code of the same band half a "
                             "second earlier (ours; PriorConfig.previous_column; with groups, at the decoder's input); "
                             "with --init-from, added to that bottom prior. On the campaign's codes, one cell per step: "
                             "0.68 nats per cell lower held-out cross-entropy at 300 steps, and no better family "
                             "in its new sounds (docs/training.md)")
    priors.add_argument("--encoder-layers", type=_positive_int, default=None, metavar="N",
                        help="encoder layers of new priors (default: the size's); the bottom prior's encoder "
                             "reads the top map once per draw, so its depth costs a sampled cell nothing")
    priors.add_argument("--decoder-layers", type=_positive_int, default=None, metavar="N",
                        help="decoder layers of new priors (default: the size's); each costs every sampled step")
    priors.add_argument("--init-from", type=Path, default=None, metavar="FOLDER",
                        help="start new priors from the trained ones in this model folder or `train priors` run "
                             "(fine-tuning; they must model this --vqvae's codes)")
    priors.set_defaults(func=_run_priors)

    export = commands.add_parser("export", help="write the fp16 model folder NotonoModel.load reads")
    export.add_argument("--vqvae", type=Path, required=True, help="`train vqvae` run folder")
    export.add_argument("--priors", type=Path, required=True, nargs="+",
                        help="`train priors` run folder(s); e.g. a --which top run and a --which bottom run")
    export.add_argument("--out", type=Path, required=True, help="model folder to write (e.g. models/)")
    export.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    export.set_defaults(func=_run_export)

    train.set_defaults(func=lambda args: (train.print_help(), 2)[1])


def _threads(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)


def _run_vqvae(args: argparse.Namespace) -> int:
    from .. import constants
    from .vqvae import VQVAETrainConfig, train_vqvae

    _threads(args)
    result = train_vqvae(VQVAETrainConfig(
        corpus=args.corpus, out=args.out, size=args.size, epochs=args.epochs, minutes=args.minutes,
        max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr, lr_decay_steps=args.lr_decay_steps,
        seed=args.seed, split_seed=constants.DEFAULT_SPLIT_SEED if args.split_seed is None else args.split_seed,
        cache=args.cache, workers=args.workers, device=args.device, checkpoint_minutes=args.checkpoint_minutes,
        validation_notes=args.validation_notes, decoder_from=args.decoder_from, precision=args.precision,
        magnitude_weight=args.magnitude_weight, spectral_weight=args.spectral_weight,
        bottom_dropout=args.bottom_dropout, channels_last=args.channels_last,
        model_overrides={key: value for key, value in (("bottom_codebook_size", args.bottom_codebook_size),
                                                       ("decoder_refine", args.decoder_refine))
                         if value is not None}))
    _print_summary(result.summary)
    return 0


def _run_priors(args: argparse.Namespace) -> int:
    from .. import constants
    from .priors import PriorsTrainConfig, train_priors

    _threads(args)
    result = train_priors(PriorsTrainConfig(
        corpus=args.corpus, vqvae=args.vqvae, out=args.out, size=args.size, which=args.which,
        epochs=args.epochs, minutes=args.minutes, max_steps=args.max_steps, batch_size=args.batch_size,
        lr=args.lr, lr_decay_steps=args.lr_decay_steps, seed=args.seed,
        split_seed=constants.DEFAULT_SPLIT_SEED if args.split_seed is None else args.split_seed,
        cache=args.cache, extraction_batch_size=args.extraction_batch_size, workers=args.workers,
        device=args.device, checkpoint_minutes=args.checkpoint_minutes, precision=args.precision,
        condition_dropout=args.condition_dropout, label_layers=args.label_layers,
        bottom_group=args.bottom_group, pitch_comb=args.pitch_comb,
        previous_column=args.previous_column, init_from=args.init_from,
        model_overrides={f"{part}_layers": n for part, n in (("encoder", args.encoder_layers),
                                                             ("decoder", args.decoder_layers)) if n}))
    _print_summary(result.summary)
    return 0


def _run_export(args: argparse.Namespace) -> int:
    import torch

    from .export import export_model, folder_size_bytes

    path = export_model(args.vqvae, args.priors, args.out,
                        dtype=torch.float16 if args.dtype == "float16" else torch.float32)
    print(f"model written to {path} ({folder_size_bytes(path) / 1e6:.1f} MB, {args.dtype})")
    return 0


def _print_summary(summary) -> None:
    import os

    if int(os.environ.get("RANK", "0")) != 0:
        return
    losses = ", ".join(f"{k} {v:.4g}" for k, v in summary.last_losses.items())
    print(f"{summary.stopped_because}: step {summary.step}, epoch {summary.epoch}, "
          f"{summary.notes_seen} notes in {summary.train_seconds:.0f} s "
          f"({summary.notes_per_second:.2f} notes/s over {summary.world_size} process(es)); {losses}")
