"""Where a bottom prior's decoder self-attention looks, as offsets on the bottom grid.

For each decoder layer and head of a one-cell-per-step bottom prior, teacher-forced on held-out
maps of a codes file, the share of attention that goes to each (row, column) offset between the cell
a position predicts and the cell its key holds (rows are Mel bands, columns 0.5 s steps; (0, -1) is
the same band half a second earlier). Positions of the first second are left out, since they have
no earlier column to look at. Prints each head's three largest shares:

    python benchmarks/attention_offsets.py RUN/codes.safetensors PRIORS_FOLDER [--maps 8]
"""
from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import torch

from notono_live import constants
from notono_live.codemaps import BOTTOM_ORDER
from notono_live.models import transformer
from notono_live.training import common, modelio
from notono_live.training.priors import load_codes


@contextlib.contextmanager
def _recorded_causal_attention(weights: list[torch.Tensor]):
    """Collects the mean over the batch of each causal self-attention's weights [heads, L, L]."""
    attend = transformer._attend

    def recording(q, k, v, mask, causal=False):
        if causal:
            scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
            future = torch.ones(scores.shape[-2:], dtype=torch.bool).triu(1)
            weights.append(scores.masked_fill(future, float("-inf")).softmax(-1).mean(0))
        return attend(q, k, v, mask, causal)

    transformer._attend = recording
    try:
        yield
    finally:
        transformer._attend = attend


def offset_shares(weights: torch.Tensor) -> list[dict[tuple[int, int], float]]:
    """Per head, attention share by grid offset, over the positions past the first second.

    weights [heads, L, L] over decoder positions; position p predicts cell p and its key j holds
    cell j - 1 (the decoder's input is shifted), so key j + 1 stands for cell j.
    """
    order = torch.as_tensor(BOTTOM_ORDER)
    rows, columns = order[:, 0], order[:, 1]
    length = len(order)
    # pairs (query p, cell k < p) with p past the first second; one offset id per pair, for every head
    query, cell = torch.tril_indices(length, length, offset=-1)
    keep = columns[query] >= 2
    query, cell = query[keep], cell[keep]
    row_offset, column_offset = rows[cell] - rows[query], columns[cell] - columns[query]
    span = constants.BOTTOM_SHAPE[1]
    ids = (row_offset + constants.BOTTOM_SHAPE[0] - 1) * span + column_offset + span - 1
    offsets = {i: (r, c) for i, r, c in zip(ids.tolist(), row_offset.tolist(), column_offset.tolist())}
    shares = []
    for head in weights:
        totals = torch.bincount(ids, weights=head[query, cell + 1].double())
        totals = totals / totals.sum()
        shares.append({offsets[i]: float(totals[i]) for i in offsets})
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("codes", type=Path, help="a codes.safetensors written by `train priors`")
    parser.add_argument("priors", type=Path, help="a run, checkpoint or model folder with a bottom prior")
    parser.add_argument("--maps", type=int, default=8, help="held-out maps, spread over the split")
    args = parser.parse_args()
    if args.maps < 1:
        parser.error(f"--maps must be at least 1, got {args.maps}")
    torch.set_num_threads(1)
    source = common.find_checkpoint_dir(args.priors) or args.priors
    if not modelio.has_prior(source, "bottom"):
        parser.error(f"{args.priors} holds no bottom prior")
    prior = modelio.load_prior(source, "bottom", torch.device("cpu")).eval()
    if prior.config.bottom_group != 1:
        parser.error(f"{args.priors}: the bottom prior decodes {prior.config.bottom_group} cells per step; "
                     f"this reads one-cell-per-step priors only")
    held_out = load_codes(args.codes)[0]["heldout"]
    index = torch.linspace(0, len(held_out) - 1, min(args.maps, len(held_out))).round().long()
    weights: list[torch.Tensor] = []
    with torch.no_grad(), _recorded_causal_attention(weights):
        prior(held_out.bottom_tokens()[index], held_out.top_tokens()[index],
              held_out.pitch[index] - constants.PITCH_MIN, held_out.family[index])
    for layer, layer_weights in enumerate(weights):
        for head, shares in enumerate(offset_shares(layer_weights)):
            largest = sorted(shares.items(), key=lambda item: -item[1])[:3]
            print(f"layer {layer} head {head}: " + ", ".join(f"{offset}: {share:.2f}" for offset, share in largest))


if __name__ == "__main__":
    main()
