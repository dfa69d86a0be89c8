"""The output head of a bottom prior that decodes several bottom cells per step (`PriorConfig.bottom_group`).

With groups of G cells, decoder position g reads the G cells of group g − 1 and its state h_g stands
for everything before group g. The cells of group g are then predicted one after the other from
h_g: cell j of the group from

    head(norm(h_g + s_j + W · [e(c_g,0), …, e(c_g,j−1), 0, …]))

with s_j a learned per-cell vector, e the decoder's token embedding and W one linear map of the
group's earlier cells (the later ones zeroed). Each cell therefore still sees every cell before it,
p(c_i | c_<i, top), as with one cell per step, but the decoder, which is where a step's cost lies,
runs G times fewer steps; the head costs one small product per cell.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class GroupHead(nn.Module):
    """Per-cell vectors and the map of a group's earlier cells (see the module doc).

    Args:
        group: cells per decoder step (G).
        d_model: the decoder's width.
        token_dim: the width of the token embedding.
    """

    def __init__(self, group: int, d_model: int, token_dim: int) -> None:
        super().__init__()
        self.group = group
        self.slot = nn.Parameter(torch.randn(group, d_model) * 0.02)
        self.earlier = nn.Linear((group - 1) * token_dim, d_model)
        nn.init.zeros_(self.earlier.weight)   # starts as G independent predictions from h_g
        # row j keeps the embeddings of cells 0..j-1 of the group
        self.register_buffer("seen", torch.ones(group, group - 1).tril(-1), persistent=False)

    def states(self, hidden: Tensor, embedded: Tensor, slot: int | None = None) -> Tensor:
        """The pre-norm states of the group's cells.

        hidden [..., d]: decoder states, one per group; embedded [..., G, token_dim]: the token
        embeddings of each group's cells (only the first G − 1 are read, and only those before a
        cell count for it). slot None gives every cell [..., G, d]; an int gives that cell [..., d].
        """
        earlier = embedded[..., : self.group - 1, :]
        if slot is None:
            seen = earlier.unsqueeze(-3) * self.seen[:, :, None]   # [..., G, G-1, token_dim]
            return hidden.unsqueeze(-2) + self.slot + self.earlier(seen.flatten(-2))
        seen = earlier * self.seen[slot][:, None]
        return hidden + self.slot[slot] + self.earlier(seen.flatten(-2))
