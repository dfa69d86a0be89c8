"""How much of the instrument family a VQ-VAE keeps in its top map, measured without any prior.

Usage (from the repository root, package importable):

    python benchmarks/bottom_swap_family.py VQVAE [VQVAE ...] --corpus CORPUS [--cache CACHE]
        [--notes 240] [--fit-notes 4000] [--columns 0-1,all] [--seed 1]

VQVAE is a `train vqvae` run folder (its last checkpoint) or a model folder. A bottom prior draws
codes that are plausible under the top map but not the note's own, and where the bottom codes
carry the family the drawn sound loses it (docs/training.md, "Where in the note"). This measures
that loss with a weak stand-in for a prior that needs no training: a table of how often each
bottom code occurs in each cell of the bottom map under each code of the top cell above it,
counted over the training split's notes (`--fit-notes`, spread over it), backed off to the
cell's own counts where that top code was rare. For held-out notes spread over the split, the
bottom cells of `--columns` (0.5 s per column; `all`, `C` or `FIRST-LAST`) are redrawn from the
table under the note's own top codes, the rest keep the note's codes, and the eval's family
classifier (trained on the training split, seeded as `eval --seed`) scores the decoded audio
against the same notes' reconstructions.

Each VQ-VAE's line also holds its reconstructions' spectral convergence and log-spectral distance
against the original audio and how many keep the pitch of those originals that pass the pitch check
(as `eval` measures them, on these notes), and the table's cross-entropy along the held-out notes'
real bottom codes, by bottom column (nats per cell), beside the entropy of the codes' overall
distribution: how far the top code above and the cell's position alone predict a bottom code.
`top alone` scores the notes decoded from their top codes only (`VQVAE2.decode_top`: what a VQ-VAE
trained with `--bottom-dropout` learned to read; others decode it poorly): family, spectral
convergence and pitch kept. Two
VQ-VAEs compare on one run: the one whose redrawn bottoms keep more of their reconstructions'
family keeps more of it in its top map, where a prior conditioned on the family can reach it.
Untimed; docs/training.md quotes its figures.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from bottom_prior_family import add_held_out_arguments, held_out_setup   # benchmarks/, on the path as a script
from notono_live import constants
from notono_live.evaluation.classifier import family_features
from notono_live.data.roundtrip import spectral_distances
from notono_live.evaluation.report import _images_of, _load_audio, _pitch_checker, _spread
from notono_live.representation import MelIF
from notono_live.training import modelio

BATCH = 16
BOTTOM_CELLS = constants.BOTTOM_SHAPE[0] * constants.BOTTOM_SHAPE[1]
BACKOFF = 5.0         # pseudo-counts of the cell's own distribution added to each top code's counts
CELL_BACKOFF = 50.0   # pseudo-counts of the overall distribution added to each cell's counts


def encode(vqvae, stats, split, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Top [N, 32, 4] and bottom [N, 64, 8] codes of those notes of a split (images from its cache)."""
    tops, bottoms = [], []
    with torch.inference_mode():
        for s in range(0, len(indices), BATCH):
            images = torch.stack([split.image(i) for i in indices[s:s + BATCH]])
            top, bottom = vqvae.encode_codes(stats.normalize(images))
            tops.append(top)
            bottoms.append(bottom)
    return torch.cat(tops), torch.cat(bottoms)


def above(tops: torch.Tensor) -> torch.Tensor:
    """The top code over each bottom cell: [N, 32, 4] -> [N, 64, 8] (a top cell covers 2 × 2)."""
    return tops.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)


class CellTable:
    """p(bottom code | cell, top code above), backed off to p(bottom code | cell); the counts are
    kept sparse (cells × top codes × bottom codes would not fit in memory dense)."""

    def __init__(self, tops: torch.Tensor, bottoms: torch.Tensor, top_codes: int, bottom_codes: int) -> None:
        self.top_codes = top_codes
        key = self._keys(tops).flatten()
        ones = torch.ones(key.numel(), dtype=torch.float32)
        self.joint = torch.sparse_coo_tensor(torch.stack([key, bottoms.flatten()]), ones,
                                             (BOTTOM_CELLS * top_codes, bottom_codes), check_invariants=True).coalesce()
        overall = torch.bincount(bottoms.flatten(), minlength=bottom_codes).float() + 1.0
        overall = overall / overall.sum()               # every code's share, each counted once more
        own = torch.zeros(BOTTOM_CELLS, bottom_codes).index_put_((key // top_codes, bottoms.flatten()), ones,
                                                          accumulate=True)
        # the cell's own counts, backed off to the overall shares
        self.own = (own + CELL_BACKOFF * overall) / (own.sum(-1, keepdim=True) + CELL_BACKOFF)

    def _keys(self, tops: torch.Tensor) -> torch.Tensor:
        """Each bottom cell's row of the table: its place × top codes + the top code above it."""
        rows, columns = constants.BOTTOM_SHAPE
        cell = torch.arange(BOTTOM_CELLS).view(1, rows, columns).expand(len(tops), -1, -1)
        return cell * self.top_codes + above(tops)

    def of(self, tops: torch.Tensor) -> torch.Tensor:
        """Distributions [N, 64, 8, V] of each bottom cell under tops [N, 32, 4]."""
        keys = self._keys(tops)
        counts = self.joint.index_select(0, keys.flatten()).to_dense().view(*keys.shape, -1)
        own = self.own[keys // self.top_codes]
        return (counts + BACKOFF * own) / (counts.sum(-1, keepdim=True) + BACKOFF)

    def draw(self, tops: torch.Tensor, bottoms: torch.Tensor, mask: np.ndarray, seed: int) -> torch.Tensor:
        """`bottoms` with the cells of `mask` redrawn from the table under `tops`."""
        generator = torch.Generator().manual_seed(seed)
        out = []
        for s in range(0, len(tops), BATCH):
            p = self.of(tops[s:s + BATCH])
            out.append(torch.multinomial(p.flatten(0, 2), 1, generator=generator).view(p.shape[:3]))
        return torch.where(torch.as_tensor(mask), torch.cat(out), bottoms)

    def cross_entropy_by_column(self, tops: torch.Tensor, bottoms: torch.Tensor) -> list[float]:
        log_p = torch.cat([self.of(tops[s:s + BATCH]).gather(-1, bottoms[s:s + BATCH, ..., None]).squeeze(-1).log()
                           for s in range(0, len(tops), BATCH)])
        return [round(float(-log_p[:, :, c].mean()), 3) for c in range(constants.BOTTOM_SHAPE[1])]


def decoded(vqvae, stats, tops: torch.Tensor, bottoms: torch.Tensor | None,
            transform: MelIF) -> tuple[torch.Tensor, np.ndarray]:
    """The family classifier's features of the decoded audio, re-analysed as the eval does, and
    the audio [N, samples]. bottoms None: the top codes alone (`VQVAE2.decode_top`)."""
    features, audio = [], []
    with torch.inference_mode():
        for s in range(0, len(tops), BATCH):
            top = tops[s:s + BATCH]
            image = stats.denormalize(vqvae.decode_top(top) if bottoms is None
                                      else vqvae.decode_codes(top, bottoms[s:s + BATCH]))
            audio.append(transform.inverse(image).float().numpy())
            features.append(family_features(_images_of(audio[-1], transform)))
    return torch.cat(features), np.concatenate(audio)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("vqvae", nargs="+")
    add_held_out_arguments(parser, columns="0-1,all")
    parser.add_argument("--fit-notes", type=int, default=4000)
    args = parser.parse_args()
    regions, train, heldout, classifier, chosen = held_out_setup(args)
    family = torch.tensor([heldout.records[i].family_index for i in chosen])
    transform = MelIF()
    for path in args.vqvae:
        vqvae, stats, _, folder = modelio.load_vqvae_any(path, torch.device("cpu"))
        vqvae.eval()
        top_codes, bottom_codes = vqvae.config.codebook_sizes
        table = CellTable(*encode(vqvae, stats, train, _spread(len(train), args.fit_notes)), top_codes, bottom_codes)
        tops, bottoms = encode(vqvae, stats, heldout, chosen)
        counts = torch.bincount(bottoms.flatten(), minlength=bottom_codes).double()
        p = counts[counts > 0] / counts.sum()
        reconstructed, audio = decoded(vqvae, stats, tops, bottoms, transform)
        originals = np.stack([_load_audio(heldout.records[i]) for i in chosen])
        lsd, sc = spectral_distances(originals, audio)
        check = _pitch_checker()
        passing = [k for k, i in enumerate(chosen) if check(originals[k], heldout.records[i].pitch)]
        kept = sum(check(audio[k], heldout.records[chosen[k]].pitch) for k in passing)
        row = {"vqvae": path, "codebooks": [top_codes, bottom_codes], "notes": len(chosen),
               "spectral_convergence": round(float(np.mean(sc)), 4), "lsd_db": round(float(np.mean(lsd)), 3),
               "pitch_kept": f"{kept}/{len(passing)}",
               "reconstructions": round(classifier.accuracy(reconstructed, family), 4),
               "bottom_entropy": round(float(-(p * p.log()).sum()), 3),
               "table_cross_entropy_by_column": table.cross_entropy_by_column(tops, bottoms)}
        alone, alone_audio = decoded(vqvae, stats, tops, None, transform)
        row["top alone"] = {
            "family": round(classifier.accuracy(alone, family), 4),
            "spectral_convergence": round(float(np.mean(spectral_distances(originals, alone_audio)[1])), 4),
            "pitch_kept": f"{sum(check(alone_audio[k], heldout.records[chosen[k]].pitch) for k in passing)}"
                          f"/{len(passing)}"}
        for text, mask in regions:
            drawn = table.draw(tops, bottoms, mask, args.seed)
            row[f"redrawn {text}"] = round(classifier.accuracy(decoded(vqvae, stats, tops, drawn, transform)[0],
                                                               family), 4)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
