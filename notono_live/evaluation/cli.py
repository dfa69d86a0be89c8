"""`notono-live eval`: measure a model folder on the held-out split and write a report."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval", help="measure a model on the held-out split; writes report.md, PNGs, WAVs, metrics.json",
        description="Reconstruction (LSD, spectral convergence vs the Mel-IF round trip), pitch kept, "
                    "generation pitch accuracy on the family x pitch grid, family recognisability, codebook "
                    "usage and the paper's three operations, with PASS/FAIL lines for the model's bars (issue 15).")
    parser.add_argument("--models", type=Path, default=None,
                        help="model folder (default: $NOTONO_MODELS or the repository's models/)")
    parser.add_argument("--corpus", type=Path, required=True, help="NSynth-layout corpus the model was trained on")
    parser.add_argument("--out", type=Path, required=True, help="report folder to write")
    parser.add_argument("--quick", action="store_true", help="tiny subsample of everything (smoke test)")
    parser.add_argument("--split-seed", type=int, default=None, help="seed of the 80/20 split (default: the project's)")
    parser.add_argument("--cache", type=Path, default=None, help="spectrogram cache folder (e.g. the training run's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--notes", type=int, default=200, help="held-out notes reconstructed")
    parser.add_argument("--new-bottom-notes", type=int, default=48,
                        help="of those whose original is on pitch, how many get a new bottom under their own top "
                             "(the bottom prior alone)")
    parser.add_argument("--samples", type=int, default=4, help="generated sounds per family x pitch cell")
    parser.add_argument("--families", default=None, help="comma-separated families of the grid (default: all 11)")
    parser.add_argument("--pitches", default=None, help="comma-separated pitches of the grid (default: the seed grid)")
    parser.add_argument("--classifier-notes", type=int, default=4000, help="training notes for the family classifier")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--guidance", type=float, default=None,
                        help="classifier-free guidance scale (default or -1: the model's; 1 = conditioned prior alone)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", type=int, default=None,
                        help="draws per generated sound, of which the one best on the asked pitch by harmonic "
                             "score is kept (default: the model's, 4; 1 judges the priors' draws as they come)")
    parser.add_argument("--pick-on", dest="pick_on", choices=("full", "previews"), default=None,
                        help="pick candidates on full decodes or on previews of their top maps (default: "
                             "the model's: previews for a VQ-VAE trained with bottom dropout)")
    parser.add_argument("--phase-iterations", type=int, default=None,
                        help="Griffin-Lim passes when turning images into audio (default: the project's, "
                             "1; 0 uses the decoded IF's phase as is, as the paper does)")
    parser.add_argument("--step-precision", dest="step_precision", choices=constants_step_precisions(),
                        default="auto", help="weights of the sampler's one-token step (as serve --step-precision)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a bar fails")
    parser.set_defaults(func=_run)


def constants_step_precisions() -> tuple[str, ...]:
    from ..constants import STEP_PRECISIONS

    return STEP_PRECISIONS


def _run(args: argparse.Namespace) -> int:
    import torch

    from .. import constants
    from .report import EvalSettings, run_evaluation

    if args.threads:
        torch.set_num_threads(args.threads)
    families = None
    if args.families:
        families = tuple(name.strip() for name in args.families.split(",") if name.strip())
        for name in families:
            constants.family_index(name)          # raises ValueError naming the valid families
    pitches = None
    if args.pitches:
        try:
            pitches = tuple(constants.check_pitch(int(p)) for p in args.pitches.split(",") if p.strip())
        except ValueError as error:
            raise ValueError(f"--pitches {args.pitches!r}: {error}") from None
    settings = EvalSettings(
        models=args.models, corpus=args.corpus, out=args.out, quick=args.quick,
        split_seed=constants.DEFAULT_SPLIT_SEED if args.split_seed is None else args.split_seed,
        cache=args.cache, device=args.device, reconstruction_notes=args.notes,
        new_bottom_notes=args.new_bottom_notes, samples_per_cell=args.samples,
        families=families, pitches=pitches, classifier_notes=args.classifier_notes, temperature=args.temperature,
        top_p=args.top_p, top_k=args.top_k, guidance=None if args.guidance in (None, -1) else args.guidance, seed=args.seed,
        candidates=args.candidates, phase_iterations=args.phase_iterations, step_precision=args.step_precision,
        pick_on=args.pick_on)
    report = run_evaluation(settings)
    print(f"report written to {Path(args.out) / 'report.md'}")
    return 1 if args.strict and not all(bar.passed for bar in report.bars) else 0
