"""The sizes and options of the two Transformer priors (`PriorConfig`), and the named sizes.

Kept apart from the priors themselves (`priors.py`) so that their options can be read in one place;
`priors` re-exports both names.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..constants import CODEBOOK_SIZE, NUM_FAMILIES, NUM_PITCHES

PRIOR_SIZES = ("lite", "small", "reference", "tiny")


@dataclass
class PriorConfig:
    """Sizes of one prior. Defaults are the paper's reference sizes.

    Args:
        d_model: width of the Transformer (paper: 512).
        encoder_layers: layers of the context encoder (paper: 6).
        decoder_layers: layers of the causal decoder (paper: 8).
        heads: attention heads (paper: 16).
        feedforward: hidden width of the feed-forward blocks (4 × d_model, the usual ratio).
        condition_dim: width of each of the pitch and family embeddings; the token embedding gets
            d_model − 2 × condition_dim so that the concatenation is d_model wide (ours).
        dropout: dropout on the residual branches (attention and feed-forward outputs) during
            training (ours).
        codebook_size: vocabulary, the codes of the map the prior draws (paper: 512 codes).
        top_codebook_size: codes of the top map that the bottom prior reads, where the VQ-VAE's
            top codebook is not the size of its bottom one (None: `codebook_size`; ours). The top
            prior ignores it.
        num_pitches: pitch classes, MIDI 24–84 (paper: 61).
        num_families: instrument families (NSynth: 11).
        bottom_cross_attention: whether the bottom decoder also cross-attends to the whole top
            encoding in every layer (a standard encoder-decoder, as the reference); without it the
            bottom decoder reads the top only through the aligned encoding added to each token,
            which already carries the whole map (the top encoder is bidirectional) and makes each
            sampled token about a third cheaper.
        unconditional: whether the prior also has a learned *unconditioned* input, used in place
            of the pitch and family embeddings of the maps whose labels training drops
            (`train priors --condition-dropout`). Sampling can then apply classifier-free
            guidance (Ho & Salimans, 2021): the logits become u + g·(c − u) for the conditioned
            logits c and unconditioned u, which strengthens pitch and family for g > 1 (ours; the
            paper samples the conditioned prior alone).
        label_layers: whether every layer also gets the pitch and family: each pre-norm of the
            encoder and decoder blocks is modulated per sequence, LN(x)·(1 + γ) + β, with γ and β
            a linear map of the condition vector (adaptive layer norm, as in FiLM), zero at
            initialisation so training starts from the concatenation-only prior (ours; the paper
            enters the labels by concatenation only). A sampled token pays one multiply-add per
            norm: the modulation is computed once per sequence.
        bottom_group: bottom cells the bottom prior's decoder handles per step (1, 2 or 4; a
            group never spans two top cells, since the 4 bottom cells under a top cell are
            consecutive in the bottom order). With 4 the decoder runs 128 steps instead of 512: each
            step's state predicts the group's cells one after the other through a small head that
            also reads the group's earlier cells (`group_head.GroupHead`), so the factorisation is
            still exact, p(c_i | c_<i, top). Ours, for real-time sampling on a CPU
            (`docs/performance.md`); the paper decodes one bottom cell per step. Measured on the
            shipped VQ-VAE's codes (`docs/training.md`): one cell per step learns much faster
            after its first ~500 steps, where groups of 4 do not. The top prior ignores it.
        pitch_comb: whether each decoder position also gets where the pitch's fundamental and
            harmonics fall in the Mel rows its cells cover (`pitch_comb`), through a linear map
            that is zero at initialisation; rows whose labels are dropped get none (ours).
        previous_column: whether the bottom prior's decoder position i also gets the embedding of
            the code of the same band one column (0.5 s) earlier than cell i, or a learned "none"
            in the first column. That cell always comes before cell i in the bottom order, so the
            factorisation stays exact; what it changes is that the commonest relation between
            bottom codes, a band keeping its code from one column to the next, is an input rather
            than something attention has to learn to look up (ours; measured in
            `docs/training.md`). With groups, a decoder step gets the previous codes of those
            of its group's cells whose previous cell lies in an earlier group, embedded,
            concatenated and mapped to one input, as the previous group's cells are (in a group
            of 4 the last two cells' previous cells are the group's first two, which the group
            head already reads). The top prior ignores it.
    """

    d_model: int = 512
    encoder_layers: int = 6
    decoder_layers: int = 8
    heads: int = 16
    feedforward: int = 2048
    condition_dim: int = 64
    dropout: float = 0.1
    codebook_size: int = CODEBOOK_SIZE
    top_codebook_size: int | None = None
    num_pitches: int = NUM_PITCHES
    num_families: int = NUM_FAMILIES
    bottom_cross_attention: bool = True
    unconditional: bool = False
    label_layers: bool = False
    bottom_group: int = 1
    pitch_comb: bool = False
    previous_column: bool = False

    @classmethod
    def from_size(cls, size: str) -> "PriorConfig":
        """`reference` (paper), `lite` (fast on a 2-core CPU), `small` (real-time sampling on a
        2-core CPU) or `tiny` (tests)."""
        if size == "reference":
            return cls()
        if size == "lite":
            # measured on the 2-core development CPU, one thread: about 2.4 ms per KV-cached token
            # with fp32 step weights, 1.35 ms with fp16 ones (1.5 s and 0.86 s for 640 tokens)
            return cls(d_model=256, encoder_layers=2, decoder_layers=4, heads=8, feedforward=1024,
                       condition_dim=32, bottom_cross_attention=False)
        if size == "small":
            # sized against the real-time budget: half the width and one layer fewer than lite,
            # about a fifth of its parameters; on the 2-core development CPU its bottom prior at 8
            # rows takes 0.86 ms per KV-cached token with the compiled float32 step and 1.04 ms
            # eager, against 3.35 and 3.75 ms for lite (`python benchmarks/compiled_step.py`)
            return cls(d_model=128, encoder_layers=1, decoder_layers=3, heads=4, feedforward=512,
                       condition_dim=16, bottom_cross_attention=False)
        if size == "tiny":
            return cls(d_model=32, encoder_layers=1, decoder_layers=1, heads=2, feedforward=64,
                       condition_dim=8, dropout=0.0)
        raise ValueError(f"unknown prior size {size!r}; expected one of {', '.join(PRIOR_SIZES)}")

    def __post_init__(self) -> None:
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by heads {self.heads}")
        if self.bottom_group not in (1, 2, 4):
            raise ValueError(f"bottom_group must be 1, 2 or 4 (cells under one top cell), got {self.bottom_group}")
        if self.d_model - 2 * self.condition_dim < 8:
            raise ValueError(f"condition_dim {self.condition_dim} leaves no room for the token "
                             f"embedding in d_model {self.d_model}")

    @property
    def context_codebook_size(self) -> int:
        """Codes of the top map the bottom prior reads."""
        return self.top_codebook_size or self.codebook_size

    def to_dict(self) -> dict:
        doc = asdict(self)
        if doc["top_codebook_size"] is None:
            del doc["top_codebook_size"]   # as before the option existed: older readers load it
        return doc

    @classmethod
    def from_dict(cls, doc: dict) -> "PriorConfig":
        unknown = set(doc) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown prior config keys: {', '.join(sorted(unknown))}")
        return cls(**doc)
