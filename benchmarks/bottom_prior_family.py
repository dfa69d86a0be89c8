"""What a bottom prior keeps of the instrument family, under which sampling settings, and why.

Usage (from the repository root, package importable):

    python benchmarks/bottom_prior_family.py MODEL --corpus CORPUS [--cache CACHE] [--notes 240]
        [--settings 2@1@0.8,1@1@0.8,4@1@0.8] [--wrong-family 2@1@0.8] [--columns all,0-1,2-7]
        [--consistency-notes 64] [--seen-in CORPUS] [--seed 1]

Held-out notes spread over the corpus's split are encoded; each gets one new bottom map under its
own top map (its pitch and family as labels), drawn in batches of 16 for every setting
GUIDANCE@TEMPERATURE@TOP_P. Each setting prints what the eval's family classifier (trained on the
training split, seeded as `eval --seed`) makes of the decoded new bottoms, against the same notes'
reconstructions (and how many it puts in each family), and `evaluation.classifier.band_bias` of
the new bottoms against those reconstructions. `--wrong-family` draws under another family's label (the note's family + 5,
modulo 11) and scores against the true family: near the reconstructions' figure means the prior
ignores its label, near zero that it follows it. `--columns` redraws only some of the bottom map's
columns (0.5 s each; `0-1` is the first second, `all` the whole map) and keeps the note's own codes
in the others, which says where in the note the family is lost. `--seen-in CORPUS` splits the
held-out notes by whether they are in CORPUS's training split (a model trained on another corpus,
whose notes this one repeats, may have learnt some of them) and prints the family figures and the
prior's cross-entropy along the real bottoms for each part.

The consistency check draws new bottoms at temperature 1, top-p 1, guidance 1 (the conditioned
prior as trained) and teacher-forces them back through the prior: the mean of (−log p of each drawn
code − entropy of the distribution it was drawn from) is zero when the sampler draws from exactly
the conditionals the prior is trained on (a sampler bug shows as a positive gap); the entropy along
the drawn bottoms, against the cross-entropy along the real ones, says how far the prior drifts on
its own draws. Both are also printed by column of the bottom map, which says where in the
note the prior is least sure. `repeats` says how often a cell holds the same code as its band half
a second earlier, in the notes' own codes (first line) and in each setting's redrawn cells. Untimed; the figures of docs/training.md ("The family is lost in the bottom prior")
come from it on the campaign's models.
"""
from __future__ import annotations

import argparse
import json
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from code_statistics import along_time   # benchmarks/, on the path when run as a script
from notono_live import constants
from notono_live.codemaps import BOTTOM_ORDER
from notono_live.evaluation.classifier import band_bias, family_features
from notono_live.evaluation.report import _images_of, _load_audio, _spread, fit_family_classifier
from notono_live.models.bundle import NotonoModel, _to_maps
from notono_live.models.sampling import SamplingOptions, grid_to_sequence, inpaint_codes
from notono_live.representation import MelIF
from notono_live.training.data import open_split

BATCH = 16
WRONG_FAMILY_SHIFT = 5


def parse_setting(text: str) -> SamplingOptions:
    try:
        guidance, temperature, top_p = (float(v) for v in text.split("@"))
    except ValueError:
        raise SystemExit(f"setting {text!r}: expected GUIDANCE@TEMPERATURE@TOP_P, e.g. 2@1@0.8") from None
    return SamplingOptions(temperature, 0, top_p, guidance)


def column_mask(text: str) -> np.ndarray:
    """`all`, `C` or `FIRST-LAST` (bottom map columns, 0-based, inclusive) -> a bottom mask [64, 8]."""
    mask = np.zeros(constants.BOTTOM_SHAPE, dtype=bool)
    columns = constants.BOTTOM_SHAPE[1]
    if text == "all":
        mask[:] = True
        return mask
    try:
        first, dash, last = text.partition("-")
        first, last = int(first), int(last if dash else first)
    except ValueError:
        raise SystemExit(f"columns {text!r}: expected all, C or FIRST-LAST, e.g. 0-1") from None
    if not 0 <= first <= last < columns:
        raise SystemExit(f"columns {text!r}: the bottom map has columns 0 to {columns - 1}")
    mask[:, first:last + 1] = True
    return mask


def new_bottoms(model: NotonoModel, tops: torch.Tensor, bottoms: torch.Tensor, pitch: torch.Tensor,
                family: torch.Tensor, options: SamplingOptions, seed: int,
                mask: np.ndarray | None = None) -> torch.Tensor:
    """One new bottom [N, 64, 8] under each top [N, 32, 4], in batches, from one seeded stream; with
    `mask`, only its cells are drawn and the others keep `bottoms`' codes."""
    generator = torch.Generator().manual_seed(seed)
    whole_bottom = np.ones(constants.BOTTOM_SHAPE, dtype=bool) if mask is None else mask
    out = []
    with torch.inference_mode():
        for s in range(0, len(tops), BATCH):
            part = slice(s, s + BATCH)
            _, drawn = inpaint_codes(model.top_prior, model.bottom_prior, tops[part], bottoms[part], None,
                                     whole_bottom, pitch_index=pitch[part], family_index=family[part],
                                     options=options, generator=generator)
            out.append(drawn)
    return torch.cat(out)


def encoded(model: NotonoModel, records) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The notes' top [N, 32, 4] and bottom [N, 64, 8] codes (encoded from their audio, in batches)
    and their pitch and family indices [N]."""
    maps = []
    for s in range(0, len(records), BATCH):
        maps += model.encode(np.stack([_load_audio(r) for r in records[s:s + BATCH]]))
    return (torch.stack([torch.as_tensor(m.top) for m in maps]),
            torch.stack([torch.as_tensor(m.bottom) for m in maps]),
            torch.tensor([r.pitch - constants.PITCH_MIN for r in records]),
            torch.tensor([r.family_index for r in records]))


def features_of(model: NotonoModel, tops: torch.Tensor, bottoms: torch.Tensor, transform: MelIF) -> torch.Tensor:
    maps = _to_maps(tops, bottoms)
    return torch.cat([family_features(_images_of(model.decode(maps[s:s + BATCH]), transform))
                      for s in range(0, len(maps), BATCH)])


class TeacherForced(NamedTuple):
    """Nats per bottom cell along given bottoms: the prior's cross-entropy, the entropy of its
    conditionals, their mean gap and its standard error, and the first two by bottom column."""
    cross_entropy: float
    entropy: float
    gap: float
    gap_error: float
    cross_entropy_by_column: list[float]
    entropy_by_column: list[float]


def teacher_forced(model: NotonoModel, tops: torch.Tensor, bottoms: torch.Tensor, pitch: torch.Tensor,
                   family: torch.Tensor) -> TeacherForced:
    """The bottom prior teacher-forced along `bottoms` (see `TeacherForced`)."""
    prior = model.bottom_prior
    ce, entropy = [], []
    with torch.inference_mode():
        for s in range(0, len(tops), BATCH):
            part = slice(s, s + BATCH)
            targets = grid_to_sequence("bottom", bottoms[part])
            logits = prior(targets, grid_to_sequence("top", tops[part]), pitch[part], family[part]).float()
            log_p = logits.log_softmax(-1)
            ce.append(F.nll_loss(log_p.transpose(1, 2), targets, reduction="none").flatten())
            entropy.append(-(log_p.exp() * log_p).sum(-1).flatten())
    ce_all, entropy_all = torch.cat(ce), torch.cat(entropy)
    gap = ce_all - entropy_all
    column = torch.as_tensor(BOTTOM_ORDER[:, 1]).repeat(len(tops))
    by_column = [[round(float(values[column == c].mean()), 3) for c in range(constants.BOTTOM_SHAPE[1])]
                 for values in (ce_all, entropy_all)]
    return TeacherForced(float(ce_all.mean()), float(entropy_all.mean()), float(gap.mean()),
                         float(gap.std() / gap.numel() ** 0.5), *by_column)


def repeats(grids: torch.Tensor, mask: np.ndarray | None = None) -> dict[str, object]:
    """How often a bottom cell holds the same code as its band half a second earlier, over the
    cells of `mask` [64, 8] from the second column on (all of them without one): the fraction
    overall and by column 1 … 7 (`code_statistics.along_time`)."""
    overall, by_column = along_time(grids, mask)
    return {"all": round(overall, 4), "by_column": by_column}


def _counts(families: torch.Tensor) -> dict[str, int]:
    """How many of `families` (indices) fall in each family, by name."""
    counts = torch.bincount(families.long(), minlength=constants.NUM_FAMILIES).tolist()
    return dict(zip(constants.FAMILIES, counts))


def add_held_out_arguments(parser: argparse.ArgumentParser, columns: str) -> None:
    """The options this benchmark shares with `bottom_swap_family.py`."""
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--cache", default=None)
    parser.add_argument("--notes", type=int, default=240)
    parser.add_argument("--columns", default=columns, help="bottom columns to redraw: all, C or FIRST-LAST, comma-separated")
    parser.add_argument("--classifier-notes", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)


def held_out_setup(args: argparse.Namespace):
    """From those options: the regions to redraw, the corpus's training and held-out splits, the
    eval's family classifier fitted on training notes (seeded as `eval --seed`), and the held-out
    notes measured (indices spread over the split)."""
    torch.set_num_threads(args.threads)
    regions = [(text, column_mask(text)) for text in args.columns.split(",")]
    train = open_split(args.corpus, "train", constants.DEFAULT_SPLIT_SEED, args.cache)
    heldout = open_split(args.corpus, "heldout", constants.DEFAULT_SPLIT_SEED, args.cache)
    classifier, _ = fit_family_classifier(train, args.classifier_notes, args.seed)
    return regions, train, heldout, classifier, _spread(len(heldout), args.notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    add_held_out_arguments(parser, columns="all")
    parser.add_argument("--settings", default="2@1@0.8")
    parser.add_argument("--wrong-family", default="", help="settings drawn under a wrong family label")
    parser.add_argument("--consistency-notes", type=int, default=64)
    parser.add_argument("--seen-in", default=None, help="corpus whose training split may hold some of the held-out notes")
    args = parser.parse_args()
    regions, train, heldout, classifier, chosen = held_out_setup(args)
    records = [heldout.records[i] for i in chosen]
    parts = {"all": torch.ones(len(records), dtype=torch.bool)}
    if args.seen_in:
        trained_on = {r.note for r in open_split(args.seen_in, "train", constants.DEFAULT_SPLIT_SEED).records}
        seen = torch.tensor([r.note in trained_on for r in records])
        parts.update((name, part) for name, part in (("seen", seen), ("unseen", ~seen)) if part.any())
    model = NotonoModel.load(args.model)
    transform = MelIF()
    tops, bottoms, pitch, family = encoded(model, records)
    reconstructed = features_of(model, tops, bottoms, transform)
    print(json.dumps({"model": args.model, "notes": {name: int(part.sum()) for name, part in parts.items()},
                      "reconstructions": {name: classifier.accuracy(reconstructed[part], family[part])
                                          for name, part in parts.items()},
                      "families": _counts(family), "reconstructions_predicted": _counts(classifier.predict(reconstructed)),
                      "repeats": repeats(bottoms)}),
          flush=True)

    runs = [(text, False) for text in args.settings.split(",") if text]
    runs += [(text, True) for text in args.wrong_family.split(",") if text]
    for (text, wrong), (columns, mask) in ((run, region) for run in runs for region in regions):
        labels = (family + WRONG_FAMILY_SHIFT) % constants.NUM_FAMILIES if wrong else family
        drawn = new_bottoms(model, tops, bottoms, pitch, labels, parse_setting(text), args.seed, mask)
        drawn_features = features_of(model, tops, drawn, transform)
        bias = band_bias(drawn_features, reconstructed)
        print(json.dumps({"setting": text, "label": "wrong family" if wrong else "own family", "columns": columns,
                          "family": {name: classifier.accuracy(drawn_features[part], family[part])
                                     for name, part in parts.items()},
                          "predicted": _counts(classifier.predict(drawn_features)),
                          "attack": bias["attack"], "mean": bias["mean"], "repeats": repeats(drawn, mask)}),
              flush=True)

    if args.seen_in:
        for name, part in parts.items():
            real = teacher_forced(model, tops[part], bottoms[part], pitch[part], family[part])
            print(json.dumps({"teacher-forced": "real bottoms", "part": name, "notes": int(part.sum()),
                              "cross_entropy": round(real.cross_entropy, 4),
                              "cross_entropy_by_column": real.cross_entropy_by_column}), flush=True)
    n = min(args.consistency_notes, len(records))
    if n:
        part = slice(0, n)
        drawn = new_bottoms(model, tops[part], bottoms[part], pitch[part], family[part],
                            SamplingOptions(1.0, 0, 1.0, 1.0), args.seed)
        for name, grid in (("real bottoms", bottoms[part]), ("drawn bottoms", drawn)):
            ce, entropy, gap, error, ce_columns, entropy_columns = teacher_forced(
                model, tops[part], grid, pitch[part], family[part])
            print(json.dumps({"teacher-forced": name, "notes": n, "cross_entropy": round(ce, 4),
                              "entropy": round(entropy, 4), "gap": round(gap, 4), "gap_error": round(error, 4),
                              "cross_entropy_by_column": ce_columns, "entropy_by_column": entropy_columns}),
                  flush=True)


if __name__ == "__main__":
    main()
