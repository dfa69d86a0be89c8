"""The priors' one-token sampling step, compiled with `torch.compile` (Inductor).

A KV-cached step of a prior is about a hundred small operations (norms, products, the attention
over the cache, the residual adds), and in eager PyTorch each pays its own dispatch and Python
cost. Compiled, the element-wise work and the one-query attention are fused into a few generated
C++ loops and the products go straight to the BLAS. What that saves is a fixed cost per token: it
matters for small priors and few rows, hardly for the shipped lite priors at 8 rows, whose step is
mostly matrix work (`docs/performance.md` has the figures; `serve --compile-step` turns it on).

`StepGraph` is the step written as one function of tensors, so that it compiles to few graphs:

- the position is a 0-d tensor (written with `index_copy_`), and the number of cached positions the
  attention reads is an int that Dynamo treats as a symbol (`dynamic=True`), so one graph serves
  every position; Dynamo specialises sizes 0 and 1, so each prior has two graphs, one for a single
  row and one for any larger number (position 0 never comes here: the sampler decodes it with the
  general pass, which also fills the cache's per-sequence inputs);
- no Python branch depends on the position or on the values;
- it reads and writes the same `DecoderCache` as the eager step, so a sampler can switch between
  the two between tokens.

Its arithmetic is the eager step's, but fusion changes the rounding of the element-wise chains (a
few units in the last place of fp32), so a compiled step could draw another code where a draw
lands within that distance of a boundary; in float32 the shipped model's recorded draws come out
the same (`tests/test_compiled_step.py`). In bfloat16 its rounding differs from the pre-packed
eager step's more than that, and the draws differ.

Compiling needs a C++ compiler on the machine (Inductor generates C++ for the CPU) and takes tens
of seconds the first time a process meets a shape; Inductor keeps what it built in its cache
folder, so later processes compile in a few seconds. `NotonoModel.compile_steps` raises an error
naming the problem when compilation is impossible (`compiler_problem`), and the eager step stays
in use. A bottom prior with groups (`PriorConfig.bottom_group`) has no compiled step.
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

    def _linear(self, x: Tensor, weight_bias: tuple[Tensor, Tensor | None]) -> Tensor:
        weight, bias = weight_bias
        if weight.dtype == x.dtype:
            return F.linear(x, weight, bias)
        return F.linear(x.to(weight.dtype), weight, bias).to(x.dtype)

    def forward(self, static: Tensor, sequence: Tensor, position: Tensor, length: int,
                keys: list[Tensor], values: list[Tensor], modulation: Tensor | None,
                memories: list[tuple[Tensor, Tensor]] | None) -> Tensor:
        """Logits [B, V] for position `position` (0-d int64); length = position + 1.

        static [B, T, d]: the per-position decoder inputs (`DecoderCache.static`); sequence
        [B, T]: the tokens, of which position − 1 is read; keys/values: each decoder layer's cache
        [B, heads, T, head_dim], written at `position`; modulation: the label modulation of the
        decoder norms or None; memories: each layer's cross-attention keys and values, or None.
        """
        prior = self.prior
        b, d = static.shape[0], self.d_model
        where = position.view(1)
        x = static.index_select(1, where).squeeze(1)
        previous = sequence.index_select(1, (position - 1).clamp(min=0).view(1)).squeeze(1)
        token = torch.where(position == 0, prior.start_symbol.expand(b, -1),
                            F.embedding(previous, prior.decoder_token.weight))
        x = x + F.pad(token, (0, d - self.token_dim))
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
        norm = prior.decoder_norm
        return self._linear(F.layer_norm(x, (d,), norm.weight, norm.bias, norm.eps), self.head)


class CompiledStep:
    """A compiled `StepGraph`, called as the prior's one-token step (`_CodePrior._decode_one`).

    A plain object, not a module, so the prior never registers it (its state dict is unchanged).
    """

    def __init__(self, prior: "_CodePrior", dtype: torch.dtype) -> None:
        if getattr(prior, "group", 1) > 1:
            raise ValueError("a bottom prior with groups (bottom_group > 1) has no compiled step")
        self.graph = StepGraph(prior, dtype).eval()
        # Inductor's `freezing` (weights as constants, pre-laid-out for oneDNN) measured slower
        # here (3.0 against 2.55 ms a token, lite bottom prior, 8 rows, bf16), and its C++
        # wrapper no faster: the defaults
        self.compiled = torch.compile(self.graph, dynamic=True)
        # Dynamo counts graphs per code object, and every StepGraph shares `forward`'s: two priors
        # with two graphs each (one row, more rows), and more after a precision change, would soon
        # reach its default limit of 8 and silently fall back to the eager step
        dynamo = torch._dynamo.config
        name = "recompile_limit" if hasattr(dynamo, "recompile_limit") else "cache_size_limit"
        setattr(dynamo, name, max(getattr(dynamo, name), RECOMPILE_LIMIT))
        self._positions = torch.arange(prior.decoder_length, device=prior.head.weight.device)

    def __call__(self, sequence: Tensor, position: int, cache: "DecoderCache") -> Tensor:
        """Logits [B, V] for `position`; writes the cache there (the caller advances its length)."""
        layers = cache.layers
        memories = None if layers[0].memory is None else [layer.memory for layer in layers]
        return self.compiled(cache.static, sequence, self._positions[position], position + 1,
                             [layer.keys for layer in layers], [layer.values for layer in layers],
                             cache.modulation, memories)


# the C++ compilers Inductor can use for the CPU, as found on PATH
COMPILERS = ("c++", "g++", "clang++")
NO_COMPILER = "no C++ compiler found"
COMPILER_FIX = ("torch.compile generates C++ for the CPU: install one, e.g. build-essential on Debian/Ubuntu, "
                "Xcode's command line tools on macOS")


def compiler_problem() -> str | None:
    """Why `torch.compile` cannot build a CPU step here, or None if it looks possible."""
    if not any(shutil.which(name) for name in COMPILERS):
        return f"{NO_COMPILER} ({COMPILER_FIX})"
    return None


def warm(step: CompiledStep, prior: "_CodePrior", rows: tuple[int, ...] = (1, 2)) -> float:
    """Compile `step` by running it on scratch caches; returns the seconds it took.

    Dynamo builds one graph for one row and one for any larger number (it specialises sizes 0 and
    1), so the default `rows` covers every request. Position 0 is never a compiled step (the
    sampler decodes it with the general pass, which also fills the cache's per-sequence inputs),
    so the positions run here start at 1. Runs under inference mode, as sampling does: a graph
    traced outside it would not serve the sampler's tensors.
    """
    started = time.perf_counter()
    device = prior.head.weight.device
    width = prior.config.d_model
    with torch.inference_mode():
        for count in rows:
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
            sequence = torch.zeros(count, prior.decoder_length, dtype=torch.long, device=device)
            for position in (1, 2, prior.decoder_length - 1):
                step(sequence, position, cache)
    return time.perf_counter() - started
