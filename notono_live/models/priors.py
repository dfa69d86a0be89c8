"""The two Transformer priors over codemaps, conditioned on pitch and instrument family (NOTONO, Bazin et al., 2020).

p(top, bottom) = p(top) · p(bottom | top), read in the token order of `notono_live.codemaps`.

- `TopPrior` models p(c_i | c_<i, m ⊙ c_≥i), which is what inpainting needs: an *anti-causal*
  encoder reads the top map with the masked cells replaced by a mask token (each position attends
  to itself and the later positions), and a causal decoder reads the true tokens shifted right
  behind a learned start symbol. Decoder position i receives the encoding of position i, so the
  prediction of token i sees c_<i and the kept tokens at ≥ i, never a masked one.
- `BottomPrior` models p(c^B_i | c^B_<i, c^T): a bidirectional encoder reads the whole top map;
  the causal decoder over the 512 bottom tokens adds to bottom token i the encoding of the top
  token k = i // 4 above it, and cross-attends to the whole top encoding.

Pitch (61 classes) and family (11 classes) are learned embeddings concatenated to every token
embedding and to the learned start symbols (a prior trained with condition dropout also has a
learned unconditioned input in their place, for classifier-free guidance); no code outside the
512-code vocabulary is ever fed to a decoder (the reference fed an out-of-vocabulary start code
when generating from nothing).
Positions are learned absolute embeddings: the sequences have fixed lengths (128 and 512), and an
absolute table keeps the KV-cached step as cheap as possible.

Both priors expose the same decoding interface (`encode_context`, `decode`, `new_cache`) used by
`notono_live.models.sampling`; `forward` is the teacher-forced training pass.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import codemaps
from ..constants import BOTTOM_TOKENS, TOP_TOKENS
from . import pitch_comb
from .compiled_step import CompiledStep
from .group_head import GroupHead
from .prior_config import PRIOR_SIZES, PriorConfig  # noqa: F401  (re-exported)
from .step import StepLinear
from .transformer import (_ENCODER_NORMS, DecoderBlock, DecoderCache, EncoderBlock, LayerCache, _decoder_norms,
                          _modulated)


# ----------------------------------------------------------------------------------------------
# Priors

class _CodePrior(nn.Module):
    """What both priors share: conditioning, an encoder over the top map and a causal decoder."""

    context_length: int
    target_length: int    # tokens of the sequence it models
    decoder_length: int   # decoder positions: target_length, or fewer with bottom groups

    def __init__(self, config: PriorConfig, encoder_vocabulary: int, encoder_mask: Tensor | None,
                 cross_attention: bool, aligned_index: Tensor) -> None:
        super().__init__()
        self.config = config
        d, c = config.d_model, config.condition_dim
        token_dim = d - 2 * c
        self.pitch_embedding = nn.Embedding(config.num_pitches, c)
        self.family_embedding = nn.Embedding(config.num_families, c)
        self.encoder_token = nn.Embedding(encoder_vocabulary, token_dim)
        self.encoder_position = nn.Parameter(torch.randn(self.context_length, d) * 0.02)
        self.encoder_layers = nn.ModuleList(EncoderBlock(config) for _ in range(config.encoder_layers))
        self.encoder_norm = nn.LayerNorm(d)
        self.decoder_token = nn.Embedding(config.codebook_size, token_dim)
        self.start_symbol = nn.Parameter(torch.randn(token_dim) * 0.02)
        self.decoder_position = nn.Parameter(torch.randn(self.decoder_length, d) * 0.02)
        self.aligned = nn.Linear(d, d)
        self.decoder_layers = nn.ModuleList(DecoderBlock(config, cross_attention)
                                            for _ in range(config.decoder_layers))
        self.decoder_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.codebook_size)
        # the unconditioned input of condition dropout (classifier-free guidance), if configured;
        # training keeps it in an Adam parameter group of its own (`training.priors._parameter_groups`)
        self.null_condition = nn.Embedding(1, 2 * c) if config.unconditional else None
        # the labels in every layer (label_layers): zero at first, so the prior starts as without it
        self.label_modulation = None
        if config.label_layers:
            norms = _ENCODER_NORMS * config.encoder_layers + _decoder_norms(cross_attention) * config.decoder_layers
            self.label_modulation = nn.Linear(2 * c, norms * 2 * d)
            nn.init.zeros_(self.label_modulation.weight)
            nn.init.zeros_(self.label_modulation.bias)
        # where the pitch's harmonics fall under each decoder position (pitch_comb), if configured;
        # the condition then carries the pitch index as one more column (`condition`)
        self.comb = None
        if config.pitch_comb:
            layer = "bottom" if self.target_length == BOTTOM_TOKENS else "top"
            features = torch.from_numpy(pitch_comb.position_features(layer, self.target_length // self.decoder_length))
            self.register_buffer("comb_features", features, persistent=False)
            self.comb = nn.Linear(features.shape[-1], d)
            nn.init.zeros_(self.comb.weight)
            nn.init.zeros_(self.comb.bias)
        # the one-token sampling step's linear layers (`set_step_precision`): per decoder layer
        # (qkv, attention out, feed-forward in, feed-forward out), and the head
        self._step_layers: list[tuple[StepLinear, ...]] = []
        self._step_head: StepLinear
        # the same step compiled (`NotonoModel.compile_steps`), or None for the eager one above
        self.compiled_step: CompiledStep | None = None
        self.set_step_precision(None)
        self.register_buffer("encoder_mask", encoder_mask, persistent=False)
        # decoder position i reads encoder position aligned_index[i]
        self.register_buffer("aligned_index", aligned_index, persistent=False)

    def condition(self, pitch_index: Tensor, family_index: Tensor, drop: Tensor | None = None) -> Tensor:
        """[B] pitch classes (0..60) and [B] family indices -> [B, 2 × condition_dim].

        drop: optional [B] bool; its True rows get the unconditioned input instead (training with
        condition dropout; needs `PriorConfig.unconditional`).
        """
        if pitch_index.min() < 0 or pitch_index.max() >= self.config.num_pitches:
            raise ValueError(f"pitch index must lie in [0, {self.config.num_pitches}), "
                             f"got {pitch_index.tolist()}")
        if family_index.min() < 0 or family_index.max() >= self.config.num_families:
            raise ValueError(f"family index must lie in [0, {self.config.num_families}), "
                             f"got {family_index.tolist()}")
        condition = torch.cat([self.pitch_embedding(pitch_index), self.family_embedding(family_index)], -1)
        if self.comb is not None:
            condition = torch.cat([condition, pitch_index[:, None].to(condition.dtype)], -1)
        if drop is None:
            return condition
        return torch.where(drop.to(torch.bool)[:, None], self.unconditioned(len(condition)), condition)

    def unconditioned(self, batch: int) -> Tensor:
        """The learned unconditioned input for `batch` rows -> [batch, 2 × condition_dim]."""
        if self.null_condition is None:
            raise ValueError("this prior has no unconditioned input (it was trained without condition "
                             "dropout), so it cannot drop labels or sample with guidance")
        null = self.null_condition.weight
        if self.comb is not None:   # no pitch: no comb
            null = torch.cat([null, null.new_full((1, 1), -1.0)], -1)
        return null.expand(batch, -1)

    def _labels(self, condition: Tensor) -> Tensor:
        """The pitch and family part [B, 2 × condition_dim] of a condition (without the pitch
        index column that `pitch_comb` adds)."""
        return condition[:, :2 * self.config.condition_dim]

    def _with_condition(self, tokens: Tensor, condition: Tensor) -> Tensor:
        labels = self._labels(condition)
        return torch.cat([tokens, labels[:, None, :].expand(-1, tokens.shape[1], -1)], -1)

    def _modulations(self, condition: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """(encoder [B, layers x 2, 2, d], decoder [B, layers x 3, 2, d]) norm modulations of
        `label_layers`, or (None, None) without it."""
        if self.label_modulation is None:
            return None, None
        c = self.config
        every = self.label_modulation(self._labels(condition)).view(len(condition), -1, 2, c.d_model)
        split = _ENCODER_NORMS * c.encoder_layers
        return every[:, :split], every[:, split:]

    def _encode(self, encoder_tokens: Tensor, condition: Tensor) -> Tensor:
        x = self._with_condition(self.encoder_token(encoder_tokens), condition) + self.encoder_position
        modulation, _ = self._modulations(condition)
        for i, layer in enumerate(self.encoder_layers):
            x = layer(x, self.encoder_mask,
                      None if modulation is None else modulation[:, _ENCODER_NORMS * i:_ENCODER_NORMS * (i + 1)])
        return self.encoder_norm(x)

    def decode(self, sequence: Tensor, start: int, end: int, memory: Tensor, condition: Tensor,
               cache: DecoderCache | None = None) -> Tensor:
        """Logits [B, end-start, V] predicting tokens start..end-1 of the target sequence.

        The decoder input at position p is token p-1 of `sequence` (the start symbol at p = 0), so
        only `sequence[:, :end-1]` is read. With a cache, `start` must equal `cache.length` and the
        cache advances to `end`; without one, `start` must be 0 (the whole prefix is recomputed).
        """
        if cache is not None and end == start + 1 and start == cache.length and cache.static is not None:
            return self._decode_one(sequence, start, cache)
        return self.head(self.decoder_norm(self.decode_hidden(sequence, start, end, memory, condition, cache)))

    def _previous(self, sequence: Tensor, start: int, end: int) -> Tensor:
        """The decoder's token inputs [B, end-start, token_dim] for positions start..end-1."""
        previous = self.decoder_token(sequence[:, max(start - 1, 0):end - 1])
        if start == 0:
            previous = torch.cat([self.start_symbol.expand(sequence.shape[0], 1, -1), previous], 1)
        return previous

    def _step_input(self, sequence: Tensor, position: int) -> Tensor:
        """The token input [B, token_dim] of one decoder position (`_previous` for one position)."""
        if position == 0:
            return self.start_symbol.expand(sequence.shape[0], -1)
        return F.embedding(sequence[:, position - 1], self.decoder_token.weight)

    def decode_hidden(self, sequence: Tensor, start: int, end: int, memory: Tensor, condition: Tensor,
                      cache: DecoderCache | None = None) -> Tensor:
        """The decoder's states [B, end-start, d] at positions start..end-1, before the final norm
        and the head (`decode` without them); the same cache rules."""
        if cache is not None and end == start + 1 and start == cache.length and cache.static is not None:
            return self._decode_one(sequence, start, cache, hidden=True)
        if cache is None and start != 0:
            raise ValueError("decoding without a cache must start at position 0")
        if cache is not None and start != cache.length:
            raise ValueError(f"cache holds {cache.length} positions, asked to decode from {start}")
        previous = self._previous(sequence, start, end)
        if cache is None:
            static = self._static_inputs(memory, condition)
            modulation = self._modulations(condition)[1]
        else:
            if cache.static is None:
                cache.static = self._static_inputs(memory, condition)
                cache.modulation = self._modulations(condition)[1]
            static, modulation = cache.static, cache.modulation
        # token embedding in the first channels; condition, position and aligned context precomputed
        x = F.pad(previous, (0, 2 * self.config.condition_dim)) + static[:, start:end]
        per_layer = _decoder_norms(self.decoder_layers[0].cross is not None)
        for i, layer in enumerate(self.decoder_layers):
            x = layer(x, memory, None if cache is None else cache.layers[i], start,
                      None if modulation is None else modulation[:, per_layer * i:per_layer * (i + 1)])
        if cache is not None:
            cache.length = end
        return x

    def _decode_one(self, sequence: Tensor, position: int, cache: DecoderCache, hidden: bool = False) -> Tensor:
        """`decode` of the single position `position` with a warm cache -> logits [B, 1, V] (with
        `hidden`, `decode_hidden`'s states [B, 1, d] instead).

        At the model's own step precision (see `set_step_precision`), the same kernels on the same
        values as the general path (so the same floats and the same draws), minus what a one-token
        step does not need: module calls, dropout no-ops, padding,
        head split/merge copies and the chunk mask. Sampling runs this 640 times per note; at d256
        everything besides the matrix products costs about as much as they do, and this removes
        the Python/dispatch part of it (measured: 10–17 % less time per generation).
        """
        c = self.config
        d, heads = c.d_model, c.heads
        head_dim = d // heads
        b = sequence.shape[0]
        token_dim = d - 2 * c.condition_dim
        x = cache.static[:, position].clone()   # [B, d]
        x[:, :token_dim] += self._step_input(sequence, position)
        end = position + 1
        scale = head_dim ** -0.5
        per_layer = _decoder_norms(self.decoder_layers[0].cross is not None)
        for i, (layer, layer_cache, (qkv_linear, out_linear, first, last)) in enumerate(zip(
                self.decoder_layers, cache.layers, self._step_layers)):
            modulation = None if cache.modulation is None else \
                cache.modulation[:, per_layer * i:per_layer * (i + 1)]
            norm = layer.norm_attention
            h = _modulated(F.layer_norm(x, (d,), norm.weight, norm.bias, norm.eps), modulation, 0)
            qkv = qkv_linear(h).view(b, 3, heads, 1, head_dim)
            layer_cache.keys[:, :, position:end] = qkv[:, 1]
            layer_cache.values[:, :, position:end] = qkv[:, 2]
            keys = layer_cache.keys[:, :, :end]
            weights = (qkv[:, 0] @ keys.transpose(-1, -2)).mul_(scale).softmax(-1)
            y = (weights @ layer_cache.values[:, :, :end]).view(b, d)
            x = x + out_linear(y)
            if layer.cross is not None:
                if layer_cache.memory is None:
                    raise ValueError("the cache holds no cross-attention keys; decode a chunk first")
                x = x + layer.cross(_modulated(layer.norm_cross(x[:, None]), modulation, 2),
                                    layer_cache.memory)[:, 0]
            norm = layer.norm_feedforward
            h = _modulated(F.layer_norm(x, (d,), norm.weight, norm.bias, norm.eps), modulation, 1)
            x = x + last(F.gelu(first(h)))
        cache.length = end
        if hidden:
            return x[:, None]
        norm = self.decoder_norm
        x = F.layer_norm(x, (d,), norm.weight, norm.bias, norm.eps)
        return self._step_head(x)[:, None]

    def set_step_precision(self, dtype: torch.dtype | None) -> None:
        """Run the matrix products of the one-token sampling step with weights in `dtype`.

        A KV-cached step is a chain of small products (one row per sequence), so its cost is
        mostly reading the weights. None (or the model's own dtype) uses the layers' own kernels,
        which give the same floats as the full pass. bfloat16 copies serve any number of rows and
        are pre-packed for oneDNN on a CPU that supports it; float16 copies serve at most
        `step.FP16_MAX_ROWS` rows (no fast fp16 matrix-matrix kernel on a CPU). The residual
        stream, layer norms, attention and softmax stay in the model's dtype. The copies are not
        parameters: training and `state_dict` never see them, and they must be refreshed (call
        again) after the weights change or the prior moves to another device. See
        `notono_live.models.step`.
        """
        dtype = self.head.weight.dtype if dtype is None else dtype
        self.compiled_step = None   # built for other weights

        def make(linear: nn.Linear) -> StepLinear:
            return StepLinear(linear, dtype)

        self._step_layers = [(make(layer.attention.qkv), make(layer.attention.out),
                              make(layer.feedforward[0]), make(layer.feedforward[3]))
                             for layer in self.decoder_layers]
        self._step_head = make(self.head)

    @property
    def step_precision(self) -> torch.dtype:
        """The dtype of the weights the one-token sampling step multiplies with."""
        if self._step_head.weight is None:   # the layers' own kernels
            return self.head.weight.dtype
        return self._step_head.dtype

    def _static_inputs(self, memory: Tensor, condition: Tensor) -> Tensor:
        """What the decoder input holds besides the previous token, for every position [B, L, d]:
        the pitch/family embeddings (after the token channels), the position embedding and the
        aligned encoder output. It does not change while sampling, so the cache computes it once."""
        token_dim = self.config.d_model - 2 * self.config.condition_dim
        labels = F.pad(self._labels(condition), (token_dim, 0))[:, None, :]
        static = labels + self.decoder_position + self.aligned(memory)[:, self.aligned_index]
        if self.comb is None:
            return static
        pitch = condition[:, -1].round().long()   # -1: labels dropped
        comb = self.comb(self.comb_features[pitch.clamp(min=0)].to(static.dtype))
        return static + comb * (pitch >= 0)[:, None, None].to(static.dtype)

    def new_cache(self, batch: int, device=None, dtype=None) -> DecoderCache:
        """An empty KV cache for `batch` sequences."""
        c = self.config
        param = self.head.weight
        # one position more than a sequence has: the attention of the last position then reads a
        # slice of the cache, not the whole tensor, like every other position, so the compiled
        # step (`compiled_step`) needs no graph of its own for it
        return DecoderCache([LayerCache(batch, c.heads, self.decoder_length + 1, c.d_model // c.heads,
                                        device or param.device, dtype or param.dtype)
                             for _ in range(c.decoder_layers)])


class TopPrior(_CodePrior):
    """Inpainting-aware prior over the 128 top tokens, p(c_i | c_<i, m ⊙ c_≥i, pitch, family).

    Args:
        config: sizes; see `PriorConfig`.
    """

    context_length = TOP_TOKENS
    target_length = TOP_TOKENS
    decoder_length = TOP_TOKENS

    def __init__(self, config: PriorConfig | None = None) -> None:
        config = config or PriorConfig()
        n = TOP_TOKENS
        anti_causal = torch.ones(n, n, dtype=torch.bool).triu()   # position i attends to j >= i
        super().__init__(config, config.codebook_size + 1, anti_causal, cross_attention=False,
                         aligned_index=torch.arange(n))
        self.mask_token = config.codebook_size

    def encode_context(self, top_tokens: Tensor, keep_mask: Tensor, condition: Tensor) -> Tensor:
        """Encode the kept cells (keep_mask [B, 128] or [128] True = kept) -> memory [B, 128, d]."""
        keep_mask = keep_mask.to(torch.bool).expand_as(top_tokens)
        visible = torch.where(keep_mask, top_tokens, torch.full_like(top_tokens, self.mask_token))
        return self._encode(visible, condition)

    def forward(self, top_tokens: Tensor, keep_mask: Tensor, pitch_index: Tensor,
                family_index: Tensor, drop_condition: Tensor | None = None) -> Tensor:
        """Teacher-forced logits [B, 128, 512] for top tokens [B, 128] given the kept cells
        (drop_condition: see `condition`)."""
        _check_tokens("top", top_tokens, TOP_TOKENS, self.config.codebook_size)
        condition = self.condition(pitch_index, family_index, drop_condition)
        memory = self.encode_context(top_tokens, keep_mask, condition)
        return self.decode(top_tokens, 0, TOP_TOKENS, memory, condition)


class BottomPrior(_CodePrior):
    """Prior over the 512 bottom tokens given the whole top map, p(c^B_i | c^B_<i, c^T, pitch, family).

    Args:
        config: sizes; see `PriorConfig`.
    """

    context_length = TOP_TOKENS
    target_length = BOTTOM_TOKENS

    def __init__(self, config: PriorConfig | None = None) -> None:
        config = config or PriorConfig()
        self.group = config.bottom_group
        self.decoder_length = BOTTOM_TOKENS // self.group
        # decoder position g (cells g·G ..) sits under top cell g·G // 4
        super().__init__(config, config.context_codebook_size, None, cross_attention=config.bottom_cross_attention,
                         aligned_index=torch.arange(0, BOTTOM_TOKENS, self.group) // 4)
        self.group_head = None
        if self.group > 1:
            token_dim = config.d_model - 2 * config.condition_dim
            self.group_head = GroupHead(self.group, config.d_model, token_dim)
            # the previous group's cells, embedded and concatenated, make one decoder input
            self.group_input = nn.Linear(self.group * token_dim, token_dim)
        self.previous_column_embedding = None
        self.previous_column_input = None
        if config.previous_column:
            token_dim = config.d_model - 2 * config.condition_dim
            # index codebook_size: "none" (the first column, or a cell of the step's own group)
            self.previous_column_embedding = nn.Embedding(config.codebook_size + 1, token_dim)
            if self.group > 1:   # a group's cells' previous codes, embedded and concatenated
                self.previous_column_input = nn.Linear(self.group * token_dim, token_dim)
            index = previous_column_inputs(self.group)
            self.register_buffer("previous_column_index", index, persistent=False)

    def _previous_column(self, cells: Tensor) -> Tensor:
        """The previous-column term of decoder inputs from the codes [..., G] that
        `previous_column_index` picks (the vocabulary size for "none") -> [..., token_dim]."""
        embedded = self.previous_column_embedding(cells)
        if self.previous_column_input is None:
            return embedded[..., 0, :]
        return self.previous_column_input(embedded.flatten(-2))

    def _previous_column_cells(self, sequence: Tensor, index: Tensor) -> Tensor:
        """The codes [B, ..., G] of `sequence` [B, 512] at `index` [..., G], "none" where it is −1."""
        cells = sequence[:, index.clamp(min=0)]
        return torch.where(index >= 0, cells, self.config.codebook_size)

    def _previous(self, sequence: Tensor, start: int, end: int) -> Tensor:
        if self.group == 1:
            previous = super()._previous(sequence, start, end)
        else:
            g = self.group
            cells = sequence[:, max(start - 1, 0) * g:(end - 1) * g]
            previous = self.group_input(self.decoder_token(cells).reshape(sequence.shape[0], -1,
                                                                          g * self.decoder_token.embedding_dim))
            if start == 0:
                previous = torch.cat([self.start_symbol.expand(sequence.shape[0], 1, -1), previous], 1)
        if self.previous_column_embedding is None:
            return previous
        return previous + self._previous_column(
            self._previous_column_cells(sequence, self.previous_column_index[start:end]))

    def _step_input(self, sequence: Tensor, position: int) -> Tensor:
        if self.group == 1 or position == 0:
            token = super()._step_input(sequence, position)
        else:
            g = self.group
            token = self.group_input(F.embedding(sequence[:, (position - 1) * g:position * g],
                                                 self.decoder_token.weight).flatten(1))
        if self.previous_column_embedding is None:
            return token
        return token + self._previous_column(
            self._previous_column_cells(sequence, self.previous_column_index[position]))

    def cell_logits(self, hidden: Tensor, sequence: Tensor, position: int) -> Tensor:
        """With bottom groups: logits [B, V] of bottom cell `position` from the state [B, d] of its
        group's decoder step and the group's earlier cells in `sequence` [B, 512] (its later
        cells are not read)."""
        g = self.group
        start = position - position % g
        embedded = self.decoder_token(sequence[:, start:start + g])
        return self.head(self.decoder_norm(self.group_head.states(hidden, embedded, position % g)))

    def encode_context(self, top_tokens: Tensor, condition: Tensor) -> Tensor:
        """Encode the whole top map [B, 128] -> memory [B, 128, d]."""
        return self._encode(top_tokens, condition)

    def forward(self, bottom_tokens: Tensor, top_tokens: Tensor, pitch_index: Tensor,
                family_index: Tensor, drop_condition: Tensor | None = None) -> Tensor:
        """Teacher-forced logits [B, 512, V] for bottom tokens [B, 512] given top tokens [B, 128]
        (drop_condition: see `condition`)."""
        _check_tokens("top", top_tokens, TOP_TOKENS, self.config.context_codebook_size)
        _check_tokens("bottom", bottom_tokens, BOTTOM_TOKENS, self.config.codebook_size)
        condition = self.condition(pitch_index, family_index, drop_condition)
        memory = self.encode_context(top_tokens, condition)
        if self.group == 1:
            return self.decode(bottom_tokens, 0, BOTTOM_TOKENS, memory, condition)
        hidden = self.decode_hidden(bottom_tokens, 0, self.decoder_length, memory, condition)
        b = bottom_tokens.shape[0]
        embedded = self.decoder_token(bottom_tokens).view(b, self.decoder_length, self.group, -1)
        states = self.group_head.states(hidden, embedded)   # [B, groups, G, d]
        return self.head(self.decoder_norm(states)).view(b, BOTTOM_TOKENS, -1)


def previous_column_index() -> Tensor:
    """For each bottom position i, the position of the cell of the same band one column earlier,
    or -1 in the first column -> int64 [512]; always below i (`PriorConfig.previous_column`)."""
    order = codemaps.BOTTOM_ORDER.tolist()   # position -> (row, column)
    position = {(row, column): i for i, (row, column) in enumerate(order)}
    return torch.tensor([position.get((row, column - 1), -1) for row, column in order])


def previous_column_inputs(group: int) -> Tensor:
    """For each decoder position of a bottom prior with `group` cells per step, the positions of
    its cells' previous-column cells that come before the step's group, else -1 -> int64
    [512 / group, group]. With one cell per step that is `previous_column_index`; in a group of 4
    the last two cells' previous cells are the group's first two, which the group head reads."""
    index = previous_column_index().view(-1, group)
    first = torch.arange(0, BOTTOM_TOKENS, group)[:, None]
    return torch.where(index < first, index, -1)


# ----------------------------------------------------------------------------------------------
# Training helpers

def random_keep_mask(batch: int, length: int = TOP_TOKENS, generator: torch.Generator | None = None,
                     device=None) -> Tensor:
    """Training masks of the top prior: p ~ U(0, 1) per batch, each token masked w.p. p.

    Returns a bool [batch, length] tensor, True = kept (visible to the encoder).
    """
    p = torch.rand((), generator=generator)
    masked = torch.rand(batch, length, generator=generator) < p
    return (~masked).to(device)


def prior_loss(logits: Tensor, targets: Tensor, loss_mask: Tensor | None = None) -> Tensor:
    """Cross-entropy of logits [B, L, V] against targets [B, L], over the positions loss_mask selects.

    For the top prior pass `~keep_mask`: kept tokens are visible to the encoder, so predicting them
    is copying and would only dilute the loss. Returns 0 (with a gradient) if nothing is selected.
    """
    loss = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    if loss_mask is None:
        return loss.mean()
    weight = loss_mask.to(loss.dtype)
    return (loss * weight).sum() / weight.sum().clamp_min(1.0)


def _check_tokens(layer: str, tokens: Tensor, length: int, vocabulary: int) -> None:
    if tokens.dim() != 2 or tokens.shape[1] != length:
        raise ValueError(f"{layer} tokens must be [B, {length}], got {tuple(tokens.shape)}")
    if tokens.numel() and (tokens.min() < 0 or tokens.max() >= vocabulary):
        raise ValueError(f"{layer} tokens must lie in [0, {vocabulary}), "
                         f"got {int(tokens.min())}..{int(tokens.max())}")
