"""Where a VQ-VAE's reconstruction error comes from: its codebooks, or its encoder and decoder.

Usage (from the repository root, package importable):

    python benchmarks/vqvae_bottleneck.py VQVAE CORPUS [--cache CACHE] [--notes 64]

VQVAE is a `train vqvae` run folder or a model folder; CORPUS the corpus whose held-out split is
read (the same notes `train vqvae` logs its held-out curve on: `--notes` spread over the families).
Each note is reconstructed four ways and scored as `train vqvae`'s validation and `eval` score
reconstructions (spectral convergence and log-spectral distance of the decoded audio against the
original):

- quantised: the VQ-VAE as it is used (both maps through their codebooks);
- continuous: no codebook at all (the encoders' vectors decoded as they are);
- only the top quantised, and only the bottom quantised;
- the quantised reconstruction's log power with the original instantaneous frequency, and the other
  way round (which channel the error lies in: SC and LSD are measured on the decoded audio, whose
  magnitude depends on the phase the IF channel gives);

and the model-free Mel-IF round trip gives the floor. If the continuous reconstruction is no better
than the quantised one, larger or more codebooks cannot help: the encoder and decoder are the limit.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from notono_live.data.roundtrip import select_spread, spectral_distances
from notono_live.training.data import open_split
from notono_live.training.modelio import load_vqvae_any

WAYS = ("quantised", "continuous", "only the top quantised", "only the bottom quantised",
        "quantised log power, original IF", "original log power, quantised IF", "Mel-IF round trip")


@torch.no_grad()
def reconstructions(model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The four reconstructions of normalised images x (see the module doc)."""
    features_bottom = model.encoder_bottom(x)
    top_vectors = model.pre_quantize_top(model.encoder_top(features_bottom))
    top_codes = model.quantize_top(top_vectors).quantized

    def bottom(top: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vectors = model.pre_quantize_bottom(torch.cat([features_bottom, model.decoder_top(top)], 1))
        return vectors, model.quantize_bottom(vectors).quantized

    bottom_vectors, bottom_codes = bottom(top_codes)
    free_vectors, free_codes = bottom(top_vectors)
    return {"quantised": model._decode_vectors(top_codes, bottom_codes),
            "continuous": model._decode_vectors(top_vectors, free_vectors),
            "only the top quantised": model._decode_vectors(top_codes, bottom_vectors),
            "only the bottom quantised": model._decode_vectors(top_vectors, free_codes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vqvae", type=Path)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--cache", type=Path, default=None, help="spectrogram cache folder")
    parser.add_argument("--notes", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, stats = load_vqvae_any(args.vqvae, torch.device("cpu"))[:2]
    model.eval()
    held_out = open_split(args.corpus, "heldout", cache=args.cache, return_audio=True)
    index_of = {record.note: i for i, record in enumerate(held_out.records)}
    chosen = [index_of[r.note] for r in select_spread(held_out.records, args.notes)]
    scores: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {way: [] for way in WAYS}
    for start in range(0, len(chosen), 16):
        items = [held_out[i] for i in chosen[start:start + 16]]
        images = torch.stack([item["image"] for item in items])
        reference = torch.stack([item["audio"] for item in items]).numpy()
        outputs = {way: stats.denormalize(image.float())
                   for way, image in reconstructions(model, stats.normalize(images)).items()}
        quantised = outputs["quantised"]
        # which channel the error lies in: each with the other channel taken from the original
        outputs["quantised log power, original IF"] = torch.stack([quantised[:, 0], images[:, 1]], 1)
        outputs["original log power, quantised IF"] = torch.stack([images[:, 0], quantised[:, 1]], 1)
        outputs["Mel-IF round trip"] = images
        for way, image in outputs.items():
            lsd, sc = spectral_distances(reference, held_out.representation.inverse(image).numpy())
            scores[way].append((sc, lsd))
    print(f"{len(chosen)} held-out notes of {args.corpus}")
    print("| reconstruction | SC | LSD dB |")
    print("|---|---|---|")
    for way in WAYS:
        sc = np.concatenate([s for s, _ in scores[way]])
        lsd = np.concatenate([d for _, d in scores[way]])
        print(f"| {way} | {sc.mean():.3f} | {lsd.mean():.2f} |")


if __name__ == "__main__":
    main()
