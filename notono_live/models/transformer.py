"""Transformer building blocks of the priors: attention with a KV cache, pre-norm encoder and
decoder blocks, and the label modulation of their norms (`PriorConfig.label_layers`).

The priors themselves (`notono_live.models.priors`) assemble these into an encoder over the top
map and a causal decoder; the KV-cached one-token step reads the blocks' weights directly
(`_CodePrior._decode_one`, `compiled_step.StepGraph`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:   # pragma: no cover
    from .prior_config import PriorConfig


class LayerCache:
    """Keys and values of one self-attention layer for the positions decoded so far."""

    def __init__(self, batch: int, heads: int, length: int, head_dim: int, device, dtype) -> None:
        self.keys = torch.empty(batch, heads, length, head_dim, device=device, dtype=dtype)
        self.values = torch.empty_like(self.keys)
        self.memory: tuple[Tensor, Tensor] | None = None   # cross-attention keys/values, computed once


class DecoderCache:
    """KV cache of a whole decoder; `length` is the number of positions already decoded."""

    def __init__(self, layers: list[LayerCache]) -> None:
        self.layers = layers
        self.length = 0
        self.static: Tensor | None = None   # per-position decoder inputs besides the token, computed once
        self.modulation: Tensor | None = None   # the decoder norms' label modulation (label_layers), once


def _attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool = False) -> Tensor:
    # No dropout on attention weights: on CPU it forces the unfused path and a Bernoulli draw over
    # every [L, L] map, which cost more than the rest of a training step; the feed-forward and
    # residual dropouts regularise instead.
    if q.shape[2] == 1 and mask is None:
        # one query (a KV-cached step): plain matmuls beat the fused kernel's set-up cost on CPU
        weights = (q @ k.transpose(-1, -2)).mul_(q.shape[-1] ** -0.5).softmax(-1)
        return weights @ v
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)


class _HeadsMixin:
    heads: int
    head_dim: int

    def _split(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)

    def _merge(self, y: Tensor) -> Tensor:
        b, h, t, d = y.shape
        return y.transpose(1, 2).reshape(b, t, h * d)


class SelfAttention(nn.Module, _HeadsMixin):
    """Multi-head self-attention with an optional KV cache for incremental causal decoding."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = d_model // heads
        self.qkv = nn.Linear(d_model, 3 * d_model)   # one matmul per step instead of three
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)   # on the attention output (residual branch)

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False) -> Tensor:
        """Attention of x over itself; mask [T, T] (True = may attend) or causal."""
        q, k, v = (self._split(t) for t in self.qkv(x).chunk(3, dim=-1))
        return self.dropout(self.out(self._merge(_attend(q, k, v, mask, causal))))

    def step(self, x: Tensor, cache: "LayerCache", start: int) -> Tensor:
        """Causal attention of positions [start, start+T) over themselves and the cached earlier ones."""
        t = x.shape[1]
        q, k, v = (self._split(t_) for t_ in self.qkv(x).chunk(3, dim=-1))
        end = start + t
        cache.keys[:, :, start:end] = k
        cache.values[:, :, start:end] = v
        mask = None
        if t > 1:
            # chunk query t sees every cached key and the chunk's keys up to itself
            mask = torch.ones(t, end, dtype=torch.bool, device=x.device).tril(diagonal=start)
        return self.out(self._merge(_attend(q, cache.keys[:, :, :end], cache.values[:, :, :end], mask)))


class CrossAttention(nn.Module, _HeadsMixin):
    """Multi-head attention from the decoder to the encoded context (keys/values cacheable)."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = d_model // heads
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)   # on the attention output (residual branch)

    def keys_values(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        k, v = self.key_value(memory).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def forward(self, x: Tensor, keys_values: tuple[Tensor, Tensor]) -> Tensor:
        q = self._split(self.query(x))
        return self.dropout(self.out(self._merge(_attend(q, *keys_values, None))))


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, hidden: int, dropout: float) -> None:
        # dropout only on the residual branch: a draw over the 4× wider hidden layer costs more
        # CPU time than it is worth (the Identity keeps the parameter names of earlier checkpoints)
        super().__init__(nn.Linear(d_model, hidden), nn.GELU(), nn.Identity(),
                         nn.Linear(hidden, d_model), nn.Dropout(dropout))


class EncoderBlock(nn.Module):
    """Pre-norm Transformer encoder layer: self-attention under a fixed mask, feed-forward."""

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        self.norm_attention = nn.LayerNorm(config.d_model)
        self.attention = SelfAttention(config.d_model, config.heads, config.dropout)
        self.norm_feedforward = nn.LayerNorm(config.d_model)
        self.feedforward = FeedForward(config.d_model, config.feedforward, config.dropout)

    def forward(self, x: Tensor, mask: Tensor | None, modulation: Tensor | None = None) -> Tensor:
        x = x + self.attention(_modulated(self.norm_attention(x), modulation, 0), mask)
        return x + self.feedforward(_modulated(self.norm_feedforward(x), modulation, 1))


class DecoderBlock(nn.Module):
    """Pre-norm causal decoder layer, optionally cross-attending to an encoded context."""

    def __init__(self, config: PriorConfig, cross_attention: bool) -> None:
        super().__init__()
        d = config.d_model
        self.norm_attention = nn.LayerNorm(d)
        self.attention = SelfAttention(d, config.heads, config.dropout)
        self.norm_cross = nn.LayerNorm(d) if cross_attention else None
        self.cross = CrossAttention(d, config.heads, config.dropout) if cross_attention else None
        self.norm_feedforward = nn.LayerNorm(d)
        self.feedforward = FeedForward(d, config.feedforward, config.dropout)

    def forward(self, x: Tensor, memory: Tensor, cache: LayerCache | None, start: int,
                modulation: Tensor | None = None) -> Tensor:
        h = _modulated(self.norm_attention(x), modulation, 0)
        if cache is None:
            x = x + self.attention(h, causal=True)
        else:
            x = x + self.attention.step(h, cache, start)
        if self.cross is not None:
            if cache is None:
                keys_values = self.cross.keys_values(memory)
            else:
                if cache.memory is None:
                    cache.memory = self.cross.keys_values(memory)
                keys_values = cache.memory
            x = x + self.cross(_modulated(self.norm_cross(x), modulation, 2), keys_values)
        return x + self.feedforward(_modulated(self.norm_feedforward(x), modulation, 1))


# Pre-norms per block that `PriorConfig.label_layers` modulates, by index: encoder (0 attention,
# 1 feed-forward); decoder (0 self-attention, 1 feed-forward, and 2 cross-attention when it has one).
_ENCODER_NORMS = 2


def _decoder_norms(cross_attention: bool) -> int:
    return 3 if cross_attention else 2


def _modulated(h: Tensor, modulation: Tensor | None, index: int) -> Tensor:
    """LN(x)·(1 + γ) + β for a block's norm `index`; modulation [B, norms, 2, d] (None: h unchanged)."""
    if modulation is None:
        return h
    scale, shift = modulation[:, index, 0], modulation[:, index, 1]
    if h.dim() == 3:
        scale, shift = scale[:, None], shift[:, None]
    return h * (1 + scale) + shift
