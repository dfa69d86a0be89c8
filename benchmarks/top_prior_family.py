"""What the top prior's own draws keep of the instrument family, apart from the bottom prior.

Usage (from the repository root, package importable):

    python benchmarks/top_prior_family.py MODEL --corpus CORPUS [--cache CACHE] [--notes 240]
        [--settings 2@1@0.8,4@1@0.8] [--bottom-settings 1@1@0.8,4@1@0.8] [--classifier-notes 4000]
        [--seed 1]

For a model whose VQ-VAE was trained with bottom dropout (its top codes carry the family, and its
decoder rebuilds a note from them alone), held-out notes spread over the corpus's split are encoded,
and for each the top prior draws a new top map under the note's own pitch and family labels (one
per note, batches of 16, one seeded stream per setting GUIDANCE@TEMPERATURE@TOP_P). The eval's
family classifier (trained on the training split, seeded as `eval --seed`) then scores, each as a
share of the notes:

- `reconstructions`: the notes' own codes decoded (what the VQ-VAE keeps);
- `real tops alone`: the notes' own top maps decoded alone (`NotonoModel.decode_top`);
- per setting, `drawn tops alone`: the drawn top maps decoded alone, and `drawn tops, new bottoms`:
  the same tops under bottom maps the bottom prior draws for them (a generation from nothing, with
  the notes' labels). With `--bottom-settings`, the bottom prior draws under each of those instead
  of the top map's own setting (the same tops, one seeded stream per pair), which says whether the
  bottom prior's sampling settings lose the family that its top map carries.

The first pair against `real tops alone` says what the top prior loses; the second against the
first, what the bottom prior loses under the top prior's draws. `predicted` counts how many sounds
the classifier puts in each family. Untimed; docs/training.md quotes its figures.
"""
from __future__ import annotations

import argparse
import json

import torch

from bottom_prior_family import BATCH, _counts, encoded, features_of, new_bottoms, parse_setting   # benchmarks/
from notono_live import constants
from notono_live.evaluation.classifier import family_features
from notono_live.evaluation.report import _images_of, _spread, fit_family_classifier
from notono_live.models.bundle import NotonoModel
from notono_live.models.sampling import generate_top_codes
from notono_live.representation import MelIF
from notono_live.training.data import open_split


def drawn_tops(model: NotonoModel, pitch: torch.Tensor, family: torch.Tensor, options, seed: int) -> torch.Tensor:
    """One top map [N, 32, 4] from nothing per label pair, in batches, from one seeded stream."""
    generator = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        return torch.cat([generate_top_codes(model.top_prior, pitch_index=pitch[s:s + BATCH],
                                             family_index=family[s:s + BATCH], options=options,
                                             generator=generator)
                          for s in range(0, len(pitch), BATCH)])


def top_alone_features(model: NotonoModel, tops: torch.Tensor, transform: MelIF) -> torch.Tensor:
    return torch.cat([family_features(_images_of(model.decode_top(tops[s:s + BATCH]), transform))
                      for s in range(0, len(tops), BATCH)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--cache", default=None)
    parser.add_argument("--notes", type=int, default=240)
    parser.add_argument("--settings", default="2@1@0.8")
    parser.add_argument("--bottom-settings", default="",
                        help="settings of the bottom prior's draws (default: each top setting's own)")
    parser.add_argument("--classifier-notes", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train = open_split(args.corpus, "train", constants.DEFAULT_SPLIT_SEED, args.cache)
    heldout = open_split(args.corpus, "heldout", constants.DEFAULT_SPLIT_SEED, args.cache)
    classifier, _ = fit_family_classifier(train, args.classifier_notes, args.seed)
    records = [heldout.records[i] for i in _spread(len(heldout), args.notes)]
    model = NotonoModel.load(args.model)
    transform = MelIF()
    tops, bottoms, pitch, family = encoded(model, records)

    def scored(features: torch.Tensor) -> dict:
        return {"family": round(classifier.accuracy(features, family), 4),
                "predicted": _counts(classifier.predict(features))}

    print(json.dumps({"model": args.model, "notes": len(records), "bottom_dropout": model.bottom_dropout,
                      "families": _counts(family),
                      "reconstructions": scored(features_of(model, tops, bottoms, transform)),
                      "real tops alone": scored(top_alone_features(model, tops, transform))}), flush=True)
    for text in (t for t in args.settings.split(",") if t):
        drawn = drawn_tops(model, pitch, family, parse_setting(text), args.seed)
        print(json.dumps({"setting": text, "drawn tops alone": scored(top_alone_features(model, drawn, transform))}),
              flush=True)
        for bottom_text in [t for t in args.bottom_settings.split(",") if t] or [text]:
            under = new_bottoms(model, drawn, bottoms, pitch, family, parse_setting(bottom_text), args.seed + 1)
            print(json.dumps({"setting": text, "bottom setting": bottom_text,
                              "drawn tops, new bottoms": scored(features_of(model, drawn, under, transform))}),
                  flush=True)


if __name__ == "__main__":
    main()
