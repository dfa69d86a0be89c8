"""Can generation pick among its candidates from their top maps alone, before drawing their bottoms?

Usage (from the repository root, package importable): python benchmarks/preview_pick.py [MODEL_FOLDER]

For 6 pitches × 6 families it draws the daemon's 4 candidates (guidance 2), decodes them, and asks
which one pYIN puts within 50 cents of the asked pitch (`engine.pitching.pitch_miss`) when it is
picked: the first draw, the best by harmonic score on the full decode (what the daemon does), and the
best by harmonic score on a *preview* that decodes each top map with a neutral bottom (every bottom
vector the mean codebook vector, or zero). If the preview picked as well as the full decode, only the
picked candidate's bottom would need drawing. With the shipped VQ-VAE it does not (about chance);
with one trained with bottom dropout, whose zero-bottom preview is what its decoder learned
(`VQVAE2.decode_top`), it does, and `generate_sounds(pick_on="previews")` picks that way
(docs/performance.md, "Picking on previews").
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from notono_live.engine.pitching import pitch_miss
from notono_live.models.bundle import NotonoModel
from notono_live.models.pitch_selection import best_on_pitch

PITCHES = (43, 50, 57, 64, 71, 78)
FAMILIES = ("keyboard", "brass", "string", "organ", "reed", "flute")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="?", default=None)
    args = parser.parse_args()
    model = NotonoModel.load(args.models)
    vqvae = model.vqvae
    neutral = {"mean": vqvae.quantize_bottom.embed.mean(0), "zero": torch.zeros_like(vqvae.quantize_bottom.embed[0])}
    on_pitch = {"first draw": 0, "best of full decodes": 0, "best of previews (mean bottom)": 0,
                "best of previews (zero bottom)": 0}
    agree = {name: 0 for name in neutral}
    count = 0
    for pitch in PITCHES:
        for family in FAMILIES:
            maps = model.generate(pitch=pitch, family=family, n=model.candidates, seed=pitch * 7 + len(family))
            audio = model.decode(maps)
            full, _ = best_on_pitch(audio, pitch)
            hits = [pitch_miss(a, pitch) is None for a in audio]
            with torch.inference_mode():
                top = vqvae.quantize_top.lookup(torch.as_tensor(np.stack([m.top for m in maps])))
                shape = vqvae.quantize_bottom.lookup(torch.as_tensor(np.stack([m.bottom for m in maps]))).shape
                for name, vector in neutral.items():
                    image = model.stats.denormalize(vqvae._decode_vectors(top, vector.view(1, -1, 1, 1).expand(shape)))
                    preview, _ = best_on_pitch(model.representation.inverse(image).float().numpy(), pitch)
                    on_pitch[f"best of previews ({name} bottom)"] += hits[preview]
                    agree[name] += preview == full
            on_pitch["first draw"] += hits[0]
            on_pitch["best of full decodes"] += hits[full]
            count += 1
    print(f"{count} sounds, {model.candidates} candidates each; on pitch by pYIN when picked by:")
    for name, hits_ in on_pitch.items():
        print(f"  {name:<34} {hits_}/{count}")
    for name, same in agree.items():
        print(f"  preview ({name} bottom) picks what the full decode picks: {same}/{count}")


if __name__ == "__main__":
    main()
