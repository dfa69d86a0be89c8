"""Sampling codemaps from the priors: generation, inpainting and bottom regeneration (NOTONO, Bazin et al., 2020).

Masked positions are visited in the priors' linear order; every other cell is copied from the
input and never written, so it is kept bit-for-bit. With the KV cache (default) the decoder only
processes each position once: the kept prefix before the first masked cell is prefilled in one
parallel pass, each later run of kept cells is fed as one chunk, and positions after the last
masked cell are never decoded. The cost therefore grows linearly with the number of positions.
`use_cache=False` is the reference sampler (re-run the whole model for every sampled token,
quadratic cost), kept for comparison benchmarks and as a test oracle.

A top edit also resamples the bottom cells under it (`codemaps.upsample_top_mask`); a bottom edit
resamples only the bottom. All rows of a batch share one mask and are independent variations.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..codemaps import BOTTOM_ORDER, TOP_ORDER, upsample_top_mask
from ..constants import BOTTOM_SHAPE, MAX_GUIDANCE, TOP_SHAPE
from .priors import BottomPrior, TopPrior


@dataclass
class SamplingOptions:
    """How tokens are drawn from the prior's distribution.

    Args:
        temperature: logits are divided by it (paper: 1.0); must be > 0.
        top_k: keep the k most likely codes; 0 keeps all (ours).
        top_p: nucleus sampling, keep the smallest set of codes whose probability reaches top_p
            (paper: 0.8); 1.0 keeps all.
        guidance: classifier-free guidance scale g: the logits become u + g·(c − u), with c the
            conditioned logits and u the logits without pitch and family; 1.0 samples the
            conditioned prior alone (paper), larger values hold the sound closer to the asked
            pitch and family (ours). Needs priors trained with condition dropout; each sampled
            token then runs the decoder on twice the rows.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.8
    guidance: float = 1.0

    def __post_init__(self) -> None:
        if not (self.temperature > 0):
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not (0.0 < self.top_p <= 1.0):
            raise ValueError(f"top_p must lie in (0, 1], got {self.top_p}")
        if not (0.0 <= self.guidance <= MAX_GUIDANCE):
            raise ValueError(f"guidance must lie in [0, {MAX_GUIDANCE:g}], got {self.guidance}")

    @property
    def guided(self) -> bool:
        return self.guidance != 1.0



def filter_logits(logits: Tensor, options: SamplingOptions) -> Tensor:
    """Apply temperature, top-k and top-p to logits [B, V]; removed codes get -inf."""
    logits = logits.float()
    if options.temperature != 1.0:   # x / 1.0 == x exactly: skip one allocation per sampled token
        logits = logits / options.temperature
    if options.top_k and options.top_k < logits.shape[-1]:
        kth = torch.topk(logits, options.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if options.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a code once the more likely ones already reach top_p (the first is always kept)
        drop_sorted = (probs.cumsum(-1) - probs) >= options.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_logits(logits: Tensor, options: SamplingOptions, generator: torch.Generator | None) -> Tensor:
    """Draw one code per row of logits [B, V] -> [B] int64 (same law as softmax(filter_logits)).

    Draws by inverting the cumulative distribution, in code order, with one uniform number per row:
    on CPU this is several times cheaper than `torch.multinomial`, and summing in code order (not in
    sorted order) means float noise between two equivalent computations of the logits (KV cache
    or not) can only change a draw that lands within rounding distance of a boundary.
    """
    probs = filter_logits(logits, options).softmax(-1)
    cdf = probs.cumsum(-1)
    u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device) * cdf[:, -1:]
    index = torch.searchsorted(cdf, u, right=True).clamp_max_(cdf.shape[-1] - 1)
    return index.squeeze(1)


# ----------------------------------------------------------------------------------------------
# Sequences

def _sample_positions(prior, sequence: Tensor, positions: list[int], memory_fn, condition: Tensor,
                      options: SamplingOptions, generator, use_cache: bool) -> Tensor:
    """Fill sequence[:, positions] in increasing order; other entries are read, never written.

    memory_fn(rows, condition) encodes the context for `rows` rows under `condition`. With guidance
    the batch is run twice over, conditioned rows then unconditioned ones, and both halves get the
    same drawn token, so they always hold the same sequence.
    """
    sequence = sequence.clone()
    if not positions:
        return sequence
    rows = sequence.shape[0]
    if options.guided:
        condition = torch.cat([condition, prior.unconditioned(rows).to(condition.dtype)])
        sequence = torch.cat([sequence, sequence])
    length = sequence.shape[1]

    def draw(logits: Tensor) -> Tensor:
        if options.guided:
            conditioned, unconditioned = logits.float().split(rows)
            logits = unconditioned + options.guidance * (conditioned - unconditioned)
        token = sample_logits(logits, options, generator)
        return torch.cat([token, token]) if options.guided else token

    # the compiled step (`compiled_step`) draws a one-step position, mix, filter and draw included
    compiled = prior.compiled_step if use_cache and not options.top_k else None
    if getattr(prior, "group", 1) > 1:
        _sample_groups(prior, sequence, positions, memory_fn(sequence.shape[0], condition), condition,
                       draw, use_cache, compiled, options, generator, rows)
    elif use_cache:
        memory = memory_fn(sequence.shape[0], condition)
        cache = prior.new_cache(sequence.shape[0], sequence.device)
        for position in positions:
            if compiled is not None and position == cache.length and cache.static is not None:
                uniforms = _uniforms(1, rows, generator, sequence.device)
                sequence[:, position] = compiled.draw(sequence, position, cache, uniforms, options)[:, 0]
                continue
            # one chunk: the kept cells since the last sampled one, then the cell to sample
            logits = prior.decode(sequence, cache.length, position + 1, memory, condition, cache)
            sequence[:, position] = draw(logits[:, -1])
    else:
        for position in positions:
            memory = memory_fn(sequence.shape[0], condition)   # the reference re-ran the whole model per token
            logits = prior.decode(sequence, 0, length, memory, condition)
            sequence[:, position] = draw(logits[:, position])
    return sequence[:rows]


def _uniforms(count: int, rows: int, generator, device) -> Tensor:
    """The uniform numbers [count, rows, 1] of `count` successive `sample_logits` calls on `rows`
    rows, in the order they would draw them (one generator, filled in order)."""
    return torch.rand(count, rows, 1, generator=generator, device=device)


def _sample_groups(prior: BottomPrior, sequence: Tensor, positions: list[int], memory: Tensor,
                   condition: Tensor, draw, use_cache: bool, compiled=None,
                   options: SamplingOptions | None = None, generator=None, rows: int = 0) -> None:
    """`_sample_positions` for a bottom prior with groups (`PriorConfig.bottom_group`): one decoder
    step per group that holds a cell to sample, then each cell from the group's state; fills
    `sequence` in place. Without the cache the decoder is re-run over every group up to the cell's.
    With a compiled step, a group whose cells are all sampled and whose decoder step is a one-step
    one is drawn whole by it, with the uniform numbers of its `rows` draws from `generator`."""
    g = prior.group
    cache = prior.new_cache(sequence.shape[0], sequence.device) if use_cache else None
    group, hidden = -1, None
    index = 0
    while index < len(positions):
        position = positions[index]
        whole = (position % g == 0 and index + g <= len(positions) and positions[index + g - 1] == position + g - 1)
        if compiled is not None and whole and cache.length == position // g and cache.static is not None:
            group = position // g
            uniforms = _uniforms(g, rows, generator, sequence.device)
            sequence[:, position:position + g] = compiled.draw(sequence, group, cache, uniforms, options)
            index += g
            continue
        if use_cache:
            if position // g != group:
                group = position // g
                hidden = prior.decode_hidden(sequence, cache.length, group + 1, memory, condition, cache)[:, -1]
        else:
            group = position // g
            hidden = prior.decode_hidden(sequence, 0, group + 1, memory, condition)[:, -1]
        sequence[:, position] = draw(prior.cell_logits(hidden, sequence, position))
        index += 1


def _rows(x: Tensor, rows: int) -> Tensor:
    """x [B, ...] repeated to `rows` rows (the guided batch holds every row twice)."""
    return x if x.shape[0] == rows else x.repeat((rows // x.shape[0],) + (1,) * (x.dim() - 1))


@torch.inference_mode()
def sample_top_sequence(prior: TopPrior, top: Tensor, resample: Tensor, pitch_index: Tensor,
                        family_index: Tensor, options: SamplingOptions | None = None,
                        generator: torch.Generator | None = None, use_cache: bool = True) -> Tensor:
    """Resample the top tokens [B, 128] where resample [128] (bool) is True."""
    options = options or SamplingOptions()
    resample = resample.to(device=top.device, dtype=torch.bool)
    # masked cells are never read by the model; zero them so no stale value can leak in
    top = top.masked_fill(resample, 0)
    condition = prior.condition(pitch_index, family_index)
    positions = torch.nonzero(resample).flatten().tolist()
    return _sample_positions(prior, top, positions,
                             lambda rows, cond: prior.encode_context(_rows(top, rows), ~resample, cond),
                             condition, options, generator, use_cache)


@torch.inference_mode()
def sample_bottom_sequence(prior: BottomPrior, bottom: Tensor, top: Tensor, resample: Tensor,
                           pitch_index: Tensor, family_index: Tensor,
                           options: SamplingOptions | None = None,
                           generator: torch.Generator | None = None, use_cache: bool = True) -> Tensor:
    """Resample the bottom tokens [B, 512] where resample [512] is True, given top tokens [B, 128]."""
    options = options or SamplingOptions()
    resample = resample.to(device=bottom.device, dtype=torch.bool)
    bottom = bottom.masked_fill(resample, 0)
    condition = prior.condition(pitch_index, family_index)
    positions = torch.nonzero(resample).flatten().tolist()
    return _sample_positions(prior, bottom, positions,
                             lambda rows, cond: prior.encode_context(_rows(top, rows), cond),
                             condition, options, generator, use_cache)


# ----------------------------------------------------------------------------------------------
# Grids

def grid_to_sequence(layer: str, grid: Tensor) -> Tensor:
    """Grids [..., H, W] -> token sequences [..., H*W] in the priors' order (torch `flatten`)."""
    order = TOP_ORDER if layer == "top" else BOTTOM_ORDER
    return grid[..., torch.as_tensor(order[:, 0]), torch.as_tensor(order[:, 1])]


def sequence_to_grid(layer: str, tokens: Tensor) -> Tensor:
    """Token sequences [..., H*W] -> grids [..., H, W]; inverse of `grid_to_sequence`."""
    order = TOP_ORDER if layer == "top" else BOTTOM_ORDER
    shape = TOP_SHAPE if layer == "top" else BOTTOM_SHAPE
    grid = tokens.new_empty(tokens.shape[:-1] + shape)
    grid[..., torch.as_tensor(order[:, 0]), torch.as_tensor(order[:, 1])] = tokens
    return grid


def _mask_tensor(mask, shape: tuple[int, int], layer: str) -> np.ndarray:
    if mask is None:
        return np.zeros(shape, dtype=bool)
    mask = mask.cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"{layer} mask must have shape {shape}, got {mask.shape}")
    if mask.dtype != bool:
        raise ValueError(f"{layer} mask must be boolean, got dtype {mask.dtype}")
    return mask


def inpaint_codes(top_prior: TopPrior, bottom_prior: BottomPrior, top: Tensor, bottom: Tensor,
                  top_mask=None, bottom_mask=None, *, pitch_index: Tensor, family_index: Tensor,
                  options: SamplingOptions | None = None, generator: torch.Generator | None = None,
                  use_cache: bool = True) -> tuple[Tensor, Tensor]:
    """Resample the masked cells of a batch of codemaps; every other cell is kept bit-for-bit.

    Args:
        top_prior, bottom_prior: the two priors.
        top: [B, 32, 4] int64 top grids; bottom: [B, 64, 8] int64 bottom grids.
        top_mask: (32, 4) bool, True = resample; the bottom cells under it are resampled too.
        bottom_mask: (64, 8) bool, True = resample (bottom only).
        pitch_index: [B] pitch classes (MIDI − 24); family_index: [B] family indices.
        options: temperature / top-k / top-p / guidance.
        generator: torch.Generator for reproducible draws.
        use_cache: False runs the reference sampler (no KV cache; quadratic cost).

    Returns:
        (top, bottom) grids with the same shapes.
    """
    top_mask_np = _mask_tensor(top_mask, TOP_SHAPE, "top")
    bottom_mask_np = _mask_tensor(bottom_mask, BOTTOM_SHAPE, "bottom") | upsample_top_mask(top_mask_np)
    device = top.device
    top_sequence = grid_to_sequence("top", top)
    bottom_sequence = grid_to_sequence("bottom", bottom)
    top_resample = grid_to_sequence("top", torch.as_tensor(top_mask_np, device=device))
    bottom_resample = grid_to_sequence("bottom", torch.as_tensor(bottom_mask_np, device=device))
    if top_mask_np.any():
        top_sequence = sample_top_sequence(top_prior, top_sequence, top_resample, pitch_index,
                                           family_index, options, generator, use_cache)
    if bottom_mask_np.any():
        bottom_sequence = sample_bottom_sequence(bottom_prior, bottom_sequence, top_sequence,
                                                 bottom_resample, pitch_index, family_index,
                                                 options, generator, use_cache)
    return sequence_to_grid("top", top_sequence), sequence_to_grid("bottom", bottom_sequence)


def generate_top_codes(top_prior: TopPrior, *, pitch_index: Tensor, family_index: Tensor,
                       options: SamplingOptions | None = None, generator: torch.Generator | None = None,
                       use_cache: bool = True) -> Tensor:
    """Sample new top maps [B, 32, 4] from nothing for each row of pitch_index/family_index [B],
    as `generate_codes` samples its top maps, with no bottom map after them."""
    b = pitch_index.shape[0]
    top = torch.zeros((b, TOP_SHAPE[0] * TOP_SHAPE[1]), dtype=torch.long, device=pitch_index.device)
    resample = torch.ones(top.shape[1], dtype=torch.bool, device=pitch_index.device)
    return sequence_to_grid("top", sample_top_sequence(top_prior, top, resample, pitch_index, family_index,
                                                       options, generator, use_cache))


def generate_codes(top_prior: TopPrior, bottom_prior: BottomPrior, *, pitch_index: Tensor,
                   family_index: Tensor, options: SamplingOptions | None = None,
                   generator: torch.Generator | None = None, use_cache: bool = True
                   ) -> tuple[Tensor, Tensor]:
    """Sample new codemaps from nothing for each row of pitch_index/family_index [B].

    The top map is sampled from a fully masked map, then the bottom map given it; no token outside
    the vocabulary is fed anywhere (the decoders start from learned start symbols).
    """
    b = pitch_index.shape[0]
    device = pitch_index.device
    top = torch.zeros((b,) + TOP_SHAPE, dtype=torch.long, device=device)
    bottom = torch.zeros((b,) + BOTTOM_SHAPE, dtype=torch.long, device=device)
    return inpaint_codes(top_prior, bottom_prior, top, bottom, np.ones(TOP_SHAPE, dtype=bool), None,
                         pitch_index=pitch_index, family_index=family_index, options=options,
                         generator=generator, use_cache=use_cache)
