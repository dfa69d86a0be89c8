"""The priors' one-step sampling draw, compiled with `torch.compile` (Inductor).

A KV-cached step of a prior is about a hundred small operations (norms, products, the attention
over the cache, the residual adds), and the draw that follows it a dozen more (the guidance mix,
temperature, the top-p filter, the inverse-CDF draw); in eager PyTorch each pays its own dispatch
and Python cost. Compiled, the element-wise work, the one-query attention and the draw are fused
into a few generated C++ loops and the products go straight to the BLAS. What that saves is a
fixed cost per token: it matters for small priors and few rows, hardly for the shipped lite priors
at 8 rows, whose step is mostly matrix work (`docs/performance.md` has the figures;
`serve --compile-step` turns it on).

`StepGraph` is the decoder step and the draw written as one function of tensors, so that it
compiles to few graphs:

- the position is a 0-d tensor (written with `index_copy_`), and the number of cached positions the
  attention reads is an int that Dynamo treats as a symbol (`dynamic=True`), so one graph serves
  every position; temperature, top-p and the guidance scale are 0-d tensors, so one graph serves
  every setting (top-k, which the product does not use, stays with the eager step);
- Dynamo specialises sizes 0 and 1 and the graph branches on whether the batch is guided, so
  each prior has four graphs (`VARIANTS`): guided and unguided, each with one row and with more;
  position 0 never comes here (the sampler decodes it with the general pass, which also fills
  the cache's per-sequence inputs);
- a bottom prior with groups (`PriorConfig.bottom_group`) draws a whole group in one call: the
  decoder step, then each cell through the group head from the cells drawn before it;
- it reads and writes the same `DecoderCache` as the eager step and takes the uniform numbers
  the eager draws would take, in the same order, so a sampler can switch between the two between
  tokens and a seed means the same codes.

Its arithmetic is the eager step's, but fusion changes the rounding of the element-wise chains (a
few units in the last place of fp32), so a compiled step could draw another code where a draw
lands within that distance of a boundary; in float32 the shipped model's recorded draws, and a
grouped prior's eager draws, come out the same (`tests/test_compiled_step.py`). In bfloat16 its
rounding differs from the pre-packed eager step's more than that, and the draws differ.

Compiling needs a C++ compiler on the machine (Inductor generates C++ for the CPU) and takes tens
of seconds the first time a process meets a shape; Inductor keeps what it built in its cache
folder, so later processes compile in a few seconds. `NotonoModel.compile_steps` raises an error
naming the problem when compilation is impossible (`compiler_problem`), and the eager step stays
in use.
"""
from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .transformer import _modulated

if TYPE_CHECKING:   # pragma: no cover
    from .priors import DecoderCache, _CodePrior
    from .sampling import SamplingOptions


# graphs of `StepGraph.forward` that Dynamo may keep before it falls back to eager (its default: 8)
RECOMPILE_LIMIT = 64


class StepGraph(nn.Module):
    """One prior's KV-cached decoder step as a function of tensors only (see the module doc).

    Args:
        prior: the prior; its norms, embeddings and cross-attention layers are used as they are.
        dtype: the dtype of the weights of the step's linear layers (the layers' own, or bfloat16
            copies held here as non-trainable parameters).
    """

    def __init__(self, prior: "_CodePrior", dtype: torch.dtype) -> None:
        super().__init__()
        c = prior.config
        self.d_model = c.d_model
        self.heads = c.heads
        self.head_dim = c.d_model // c.heads
        self.token_dim = c.d_model - 2 * c.condition_dim
        self.group = getattr(prior, "group", 1)
        self.norms_per_layer = 3 if prior.decoder_layers[0].cross is not None else 2
        own = prior.head.weight.dtype
        # the decoder's norms, embeddings and cross-attention layers, used as they are
        self.prior = prior

        def weights(name: str, linear: nn.Linear) -> tuple[Tensor, Tensor | None]:
            # the layers' own parameters at their own dtype (shared, not copied), else copies
            pair = [linear.weight, linear.bias]
            for kind, tensor in zip(("weight", "bias"), pair):
                if tensor is None:
                    continue
                parameter = tensor if dtype == own else nn.Parameter(tensor.detach().to(dtype), requires_grad=False)
                self.register_parameter(f"{name}_{kind}", parameter)
            return getattr(self, f"{name}_weight"), getattr(self, f"{name}_bias", None)

        self.linears = [[weights(f"layer{i}_{name}", linear)
                         for name, linear in (("qkv", layer.attention.qkv), ("out", layer.attention.out),
                                              ("first", layer.feedforward[0]), ("last", layer.feedforward[3]))]
                        for i, layer in enumerate(prior.decoder_layers)]
        self.head = weights("head", prior.head)
        self.register_buffer("cells", torch.arange(self.group), persistent=False)

    def _linear(self, x: Tensor, weight_bias: tuple[Tensor, Tensor | None]) -> Tensor:
        weight, bias = weight_bias
        if weight.dtype == x.dtype:
            return F.linear(x, weight, bias)
        return F.linear(x.to(weight.dtype), weight, bias).to(x.dtype)

    def _token_input(self, sequence: Tensor, position: Tensor) -> Tensor:
        """The token input [B, token_dim] of decoder position `position` (`_step_input`)."""
        prior = self.prior
        b = sequence.shape[0]
        previous = (position - 1).clamp(min=0)
        if self.group == 1:
            embedded = F.embedding(sequence.index_select(1, previous.view(1)).squeeze(1), prior.decoder_token.weight)
        else:   # the previous group's cells, embedded and concatenated, through the group input
            cells = sequence.index_select(1, previous * self.group + self.cells)
            embedded = prior.group_input(F.embedding(cells, prior.decoder_token.weight).flatten(1))
        embedded = torch.where(position == 0, prior.start_symbol.expand(b, -1), embedded)
        if getattr(prior, "previous_column_embedding", None) is None:
            return embedded
        # the cells of the same bands one column earlier, or "none" (`BottomPrior._previous_column`)
        index = prior.previous_column_index.index_select(0, position.view(1)).squeeze(0)   # [G]
        return embedded + prior._previous_column(prior._previous_column_cells(sequence, index))

    def hidden(self, static: Tensor, sequence: Tensor, position: Tensor, length: int,
               keys: list[Tensor], values: list[Tensor], modulation: Tensor | None,
               memories: list[tuple[Tensor, Tensor]] | None) -> Tensor:
        """The decoder's state [B, d] at `position` (0-d int64), before the final norm; length =
        position + 1.

        static [B, T, d]: the per-position decoder inputs (`DecoderCache.static`); sequence
        [B, L]: the tokens, of which those feeding position are read; keys/values: each decoder
        layer's cache [B, heads, T, head_dim], written at `position`; modulation: the label
        modulation of the decoder norms or None; memories: each layer's cross-attention keys and
        values, or None.
        """
        prior = self.prior
        b, d = static.shape[0], self.d_model
        where = position.view(1)
        x = static.index_select(1, where).squeeze(1)
        x = x + F.pad(self._token_input(sequence, position), (0, d - self.token_dim))
        scale = self.head_dim ** -0.5
        per_layer = self.norms_per_layer
        for i, layer in enumerate(prior.decoder_layers):
            qkv_w, out_w, first_w, last_w = self.linears[i]
            layer_modulation = None if modulation is None else modulation[:, per_layer * i:per_layer * (i + 1)]
            norm = layer.norm_attention
            h = _modulated(F.layer_norm(x, (d,), norm.weight, norm.bias, norm.eps), layer_modulation, 0)
            qkv = self._linear(h, qkv_w).view(b, 3, self.heads, 1, self.head_dim)
            keys[i].index_copy_(2, where, qkv[:, 1])
            values[i].index_copy_(2, where, qkv[:, 2])
            weights = (qkv[:, 0] @ keys[i][:, :, :length].transpose(-1, -2)).mul(scale).softmax(-1)
            y = (weights @ values[i][:, :, :length]).view(b, d)
            x = x + self._linear(y, out_w)
            if layer.cross is not None and memories is not None:
                norm = layer.norm_cross
                h = _modulated(F.layer_norm(x, (d,), norm.weight, norm.bias, norm.eps), layer_modulation, 2)
                x = x + layer.cross(h[:, None], memories[i])[:, 0]
            norm = layer.norm_feedforward
            h = _modulated(F.layer_norm(x, (d,), norm.weight, norm.bias, norm.eps), layer_modulation, 1)
            x = x + self._linear(F.gelu(self._linear(h, first_w)), last_w)
        return x

    def logits(self, *inputs) -> Tensor:
        """Logits [B, V] of the position (`hidden`'s arguments): final norm and head."""
        x = self.hidden(*inputs)
        norm = self.prior.decoder_norm
        return self._linear(F.layer_norm(x, (self.d_model,), norm.weight, norm.bias, norm.eps), self.head)

    def forward(self, static: Tensor, sequence: Tensor, position: Tensor, length: int,
                keys: list[Tensor], values: list[Tensor], modulation: Tensor | None,
                memories: list[tuple[Tensor, Tensor]] | None, uniforms: Tensor, temperature: Tensor,
                top_p: Tensor, guidance: Tensor, guided: bool) -> Tensor:
        """The codes drawn at decoder position `position`: [B, G] (G = 1 without groups).

        The first eight arguments are `hidden`'s. uniforms [G, rows, 1]: the uniform numbers of the
        G draws (`sampling.sample_logits`); temperature, top_p, guidance: 0-d float tensors
        (top_p above 1 keeps every code); guided: the batch holds the conditioned rows then the
        unconditioned ones, which get the same codes.
        """
        inputs = (static, sequence, position, length, keys, values, modulation, memories)
        options = (temperature, top_p, guidance, guided)
        if self.group == 1:
            return _draw(self.logits(*inputs), uniforms[0], *options)[:, None]
        prior = self.prior
        hidden = self.hidden(*inputs)
        embedded = hidden.new_zeros(hidden.shape[0], self.group, self.token_dim)
        codes = []
        for cell in range(self.group):   # each cell from the state and the group's earlier cells
            logits = prior.head(prior.decoder_norm(prior.group_head.states(hidden, embedded, cell)))
            code = _draw(logits, uniforms[cell], *options)
            codes.append(code)
            if cell + 1 < self.group:
                embedded = embedded.index_copy(1, self.cells[cell:cell + 1],
                                               F.embedding(code, prior.decoder_token.weight)[:, None])
        return torch.stack(codes, 1)


def _draw(logits: Tensor, uniform: Tensor, temperature: Tensor, top_p: Tensor, guidance: Tensor,
          guided: bool) -> Tensor:
    """`sampling.sample_logits` after the guidance mix, as tensors: one code per row of `logits`
    [B, V] (both halves of a guided batch get their conditioned row's code)."""
    logits = logits.float()
    if guided:
        conditioned, unconditioned = logits.chunk(2)
        logits = unconditioned + guidance * (conditioned - unconditioned)
    logits = logits / temperature
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    drop_sorted = (probs.cumsum(-1) - probs) >= top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    cdf = logits.masked_fill(drop, float("-inf")).softmax(-1).cumsum(-1)
    code = torch.searchsorted(cdf, uniform * cdf[:, -1:], right=True).clamp_max(cdf.shape[-1] - 1).squeeze(1)
    return torch.cat([code, code]) if guided else code


class CompiledStep:
    """A compiled `StepGraph`: the sampler's one-step draw (`sampling._sample_positions`).

    A plain object, not a module, so the prior never registers it (its state dict is unchanged).
    """

    def __init__(self, prior: "_CodePrior", dtype: torch.dtype) -> None:
        self.graph = StepGraph(prior, dtype).eval()
        self.group = self.graph.group
        # Inductor's `freezing` (weights as constants, pre-laid-out for oneDNN) measured slower
        # here (3.0 against 2.55 ms a token, lite bottom prior, 8 rows, bf16), and its C++
        # wrapper no faster: the defaults
        self.compiled = torch.compile(self.graph, dynamic=True)
        # Dynamo counts graphs per code object, and every StepGraph shares `forward`'s: two priors
        # with four graphs each, and more after a precision change, would soon reach its
        # default limit of 8 and silently fall back to the eager step
        dynamo = torch._dynamo.config
        name = "recompile_limit" if hasattr(dynamo, "recompile_limit") else "cache_size_limit"
        setattr(dynamo, name, max(getattr(dynamo, name), RECOMPILE_LIMIT))
        self._positions = torch.arange(prior.decoder_length, device=prior.head.weight.device)

    def draw(self, sequence: Tensor, position: int, cache: "DecoderCache", uniforms: Tensor,
             options: "SamplingOptions") -> Tensor:
        """The codes [B, G] of decoder position `position` drawn with `uniforms` [G, rows, 1];
        writes the cache there and advances its length. `options.top_k` must be 0."""
        if options.top_k:
            raise ValueError("the compiled step draws without top-k; sample with the eager step")
        layers = cache.layers
        memories = None if layers[0].memory is None else [layer.memory for layer in layers]
        scalars = torch.tensor([options.temperature, options.top_p if options.top_p < 1.0 else 2.0,
                                options.guidance], device=sequence.device)
        codes = self.compiled(cache.static, sequence, self._positions[position], position + 1,
                              [layer.keys for layer in layers], [layer.values for layer in layers],
                              cache.modulation, memories, uniforms, scalars[0], scalars[1], scalars[2],
                              options.guided)
        cache.length = position + 1
        return codes


# the C++ compilers Inductor can use for the CPU, as found on PATH
COMPILERS = ("c++", "g++", "clang++")
NO_COMPILER = "no C++ compiler found"
COMPILER_FIX = ("torch.compile generates C++ for the CPU: install one, e.g. build-essential on Debian/Ubuntu, "
                "Xcode's command line tools on macOS")


def find_compiler() -> str | None:
    """The path of the first C++ compiler of `COMPILERS` on PATH, or None."""
    return next((found for found in map(shutil.which, COMPILERS) if found), None)


def compiler_problem() -> str | None:
    """Why `torch.compile` cannot build a CPU step here, or None if it looks possible."""
    if find_compiler() is None:
        return f"{NO_COMPILER} ({COMPILER_FIX})"
    return None


# the batches a sampler draws (`warm`): (guided, rows before guidance doubles them); Dynamo builds one
# graph for one row and one for any larger number (it specialises sizes 0 and 1, and guidance's two
# rows for one are a constant too), so these four cover every request: one edit or one kept top's
# bottom under guidance, candidates under guidance, an edit without, candidates without. A graph
# left out is compiled by the first request that needs it, while it waits (16-25 s on a 2-core CPU)
VARIANTS = ((True, 1), (True, 2), (False, 1), (False, 2))


def warm(step: CompiledStep, prior: "_CodePrior", variants: tuple[tuple[bool, int], ...] = VARIANTS) -> float:
    """Compile `step` by drawing with it on scratch caches; returns the seconds it took.

    `variants` are (guided, rows) pairs (`VARIANTS` covers every request). Position 0 is never a
    compiled step (the sampler decodes it with the general pass, which also fills the cache's
    per-sequence inputs), so the positions run here start at 1. Runs under inference mode, as
    sampling does: a graph traced outside it would not serve the sampler's tensors.
    """
    from .sampling import SamplingOptions

    started = time.perf_counter()
    device = prior.head.weight.device
    width = prior.config.d_model
    with torch.inference_mode():
        for guided, rows in variants:
            count = 2 * rows if guided else rows
            cache = prior.new_cache(count, device)
            cache.static = torch.zeros(count, prior.decoder_length, width, device=device)
            # the label modulation as sampling makes it (a view into every norm's modulation: the
            # graph's guards hold to its strides)
            zeros = torch.zeros(count, dtype=torch.long, device=device)
            cache.modulation = prior._modulations(prior.condition(zeros, zeros))[1]
            if prior.decoder_layers[0].cross is not None:
                memory = torch.zeros(count, prior.context_length, width, device=device)
                for layer, layer_cache in zip(prior.decoder_layers, cache.layers):
                    layer_cache.memory = layer.cross.keys_values(memory)
            sequence = torch.zeros(count, prior.target_length, dtype=torch.long, device=device)
            options = SamplingOptions(guidance=2.0 if guided else 1.0)
            uniforms = torch.rand(step.group, rows, 1, device=device)
            for position in (1, 2, prior.decoder_length - 1):
                step.draw(sequence, position, cache, uniforms, options)
    return time.perf_counter() - started
