"""VQ-VAE-2 over Mel-IF images: 2×1024×128 -> bottom codemap 64×8 and top codemap 32×4 (NOTONO, Bazin et al., 2020).

The bottom encoder downsamples ×16 in both axes with four stride-2 4×4 convolutions; the top encoder
halves once more. The top codes are decoded back to the bottom resolution and concatenated with the
bottom features before the bottom quantiser, so the bottom codes only carry what the top misses.
The decoder upsamples the top codes, concatenates them with the bottom codes and mirrors the bottom
encoder with four transposed convolutions.

The model works on *normalised* images (log power in [-0.8, 0.8], IF in [-1, 1]); normalising and
de-normalising is the caller's job (`NotonoModel` does it with the checkpoint's statistics).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from ..constants import (BOTTOM_SHAPE, CODEBOOK_DIM, CODEBOOK_SIZE, COMMITMENT_WEIGHT, EMA_DECAY,
                         IMAGE_CHANNELS, IMAGE_FREQ, IMAGE_TIME, TOP_SHAPE)
from .quantizer import EMAQuantizer

VQVAE_SIZES = ("lite", "small", "reference", "tiny")


@dataclass
class VQVAE2Config:
    """Sizes of the VQ-VAE-2. Defaults are the paper's reference model (≈1.8 M parameters).

    Args:
        channels: output channels of the four stride-2 4×4 convolutions of the bottom encoder
            (paper: 32, 64, 96, 128); the decoder mirrors them.
        residual_blocks: residual blocks after each encoder/decoder trunk (paper: 2).
        residual_channels: hidden width inside a residual block (paper-style: 32).
        codebook_size: codes per codebook (paper: 512).
        bottom_codebook_size: codes of the bottom codebook when it differs from the top's (None:
            `codebook_size`; ours). A smaller bottom codebook leaves less detail to the bottom
            codes, detail that a bottom prior has to draw (`docs/training.md`).
        codebook_dim: dimension of each code (paper: 64).
        ema_decay: EMA decay of the codebooks (paper: 0.99).
        commitment_weight: commitment loss weight (paper: 0.25).
        dead_code_threshold: EMA usage below which a code is re-seeded (ours; 0 disables).
        decoder_refine: the decoder's first N upsampling stages (0 to 3, coarsest first) are each
            followed by a residual block as wide as that stage (ours; 0: the paper's decoder). Their
            last convolution starts at zero, so added blocks start as the identity: a trained decoder
            given them decodes as before and trains on from there (`train vqvae --decoder-refine`).
    """

    channels: tuple[int, int, int, int] = (32, 64, 96, 128)
    residual_blocks: int = 2
    residual_channels: int = 32
    codebook_size: int = CODEBOOK_SIZE
    bottom_codebook_size: int | None = None
    codebook_dim: int = CODEBOOK_DIM
    ema_decay: float = EMA_DECAY
    commitment_weight: float = COMMITMENT_WEIGHT
    dead_code_threshold: float = 0.03
    decoder_refine: int = 0

    @classmethod
    def from_size(cls, size: str) -> "VQVAE2Config":
        """`reference` (paper), `lite` (2-core CPU training) or `tiny` (tests); `small` is the
        lite VQ-VAE (the `small` size shrinks the priors only)."""
        if size == "reference":
            return cls()
        if size in ("lite", "small"):
            # same ×16/×32 geometry and 512×64 codebooks; narrow early layers, where the
            # full-resolution convolutions spend most of the compute
            return cls(channels=(16, 32, 64, 128), residual_blocks=2, residual_channels=32)
        if size == "tiny":
            return cls(channels=(4, 8, 8, 16), residual_blocks=1, residual_channels=8)
        raise ValueError(f"unknown VQ-VAE size {size!r}; expected one of {', '.join(VQVAE_SIZES)}")

    @property
    def codebook_sizes(self) -> tuple[int, int]:
        """Codes of the (top, bottom) codebooks."""
        return self.codebook_size, self.bottom_codebook_size or self.codebook_size

    def to_dict(self) -> dict:
        doc = asdict(self)
        if doc["bottom_codebook_size"] is None:
            del doc["bottom_codebook_size"]   # as before the option existed: older readers load it
        if not doc["decoder_refine"]:
            del doc["decoder_refine"]   # likewise
        return doc

    @classmethod
    def from_dict(cls, doc: dict) -> "VQVAE2Config":
        known = set(cls.__dataclass_fields__)
        unknown = set(doc) - known
        if unknown:
            raise ValueError(f"unknown VQ-VAE config keys: {', '.join(sorted(unknown))}")
        doc = dict(doc)
        if "channels" in doc:
            doc["channels"] = tuple(doc["channels"])
        return cls(**doc)


@dataclass
class VQVAEOutput:
    """Result of a VQ-VAE-2 forward pass.

    Args:
        reconstruction: [B, 2, 1024, 128] normalised image.
        commitment_loss: scalar, sum of both quantisers' weighted commitment losses.
        top_codes: [B, 32, 4] int64.
        bottom_codes: [B, 64, 8] int64.
        top_perplexity: scalar codebook usage of the top map in this batch.
        bottom_perplexity: scalar codebook usage of the bottom map in this batch.
    """

    reconstruction: Tensor
    commitment_loss: Tensor
    top_codes: Tensor
    bottom_codes: Tensor
    top_perplexity: Tensor
    bottom_perplexity: Tensor


class ResidualBlock(nn.Module):
    """ReLU → 3×3 conv → ReLU → 1×1 conv, added to the input."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, hidden, 3, padding=1),
            nn.ReLU(), nn.Conv2d(hidden, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _trunk(channels: int, hidden: int, blocks: int) -> list[nn.Module]:
    return [ResidualBlock(channels, hidden) for _ in range(blocks)] + [nn.ReLU()]


class VQVAE2(nn.Module):
    """Two-level VQ-VAE over normalised Mel-IF images.

    Args:
        config: sizes; see `VQVAE2Config` (default: the paper's reference model).
    """

    def __init__(self, config: VQVAE2Config | None = None) -> None:
        super().__init__()
        self.config = config = config or VQVAE2Config()
        c1, c2, c3, c4 = config.channels
        hidden, blocks, dim = config.residual_channels, config.residual_blocks, config.codebook_dim
        relu = nn.ReLU

        def quantizer(codes: int) -> EMAQuantizer:
            return EMAQuantizer(codes, dim, config.ema_decay, config.commitment_weight,
                                dead_code_threshold=config.dead_code_threshold)
        top_codes, bottom_codes = config.codebook_sizes

        # bottom encoder: ×16 in both axes
        self.encoder_bottom = nn.Sequential(
            nn.Conv2d(IMAGE_CHANNELS, c1, 4, 2, 1), relu(),
            nn.Conv2d(c1, c2, 4, 2, 1), relu(),
            nn.Conv2d(c2, c3, 4, 2, 1), relu(),
            nn.Conv2d(c3, c4, 4, 2, 1), relu(),
            nn.Conv2d(c4, c4, 3, padding=1),
            *_trunk(c4, hidden, blocks))
        # top encoder: ×2 more
        self.encoder_top = nn.Sequential(
            nn.Conv2d(c4, c4, 4, 2, 1), relu(),
            nn.Conv2d(c4, c4, 3, padding=1),
            *_trunk(c4, hidden, blocks))
        self.pre_quantize_top = nn.Conv2d(c4, dim, 1)
        self.quantize_top = quantizer(top_codes)
        # top codes decoded to the bottom resolution, seen by the bottom quantiser
        self.decoder_top = nn.Sequential(
            nn.Conv2d(dim, c4, 3, padding=1),
            *_trunk(c4, hidden, blocks),
            nn.ConvTranspose2d(c4, dim, 4, 2, 1))
        self.pre_quantize_bottom = nn.Conv2d(c4 + dim, dim, 1)
        self.quantize_bottom = quantizer(bottom_codes)
        # decoder: upsampled top codes ‖ bottom codes -> image
        self.upsample_top = nn.ConvTranspose2d(dim, dim, 4, 2, 1)
        self.decoder = nn.Sequential(
            nn.Conv2d(2 * dim, c4, 3, padding=1),
            *_trunk(c4, hidden, blocks),
            nn.ConvTranspose2d(c4, c3, 4, 2, 1), relu(),
            nn.ConvTranspose2d(c3, c2, 4, 2, 1), relu(),
            nn.ConvTranspose2d(c2, c1, 4, 2, 1), relu(),
            nn.ConvTranspose2d(c1, IMAGE_CHANNELS, 4, 2, 1))
        # optional refinement after the first upsampling stages: `_refine_after` holds the index in
        # `decoder` of the ReLU closing each such stage, after which that stage's block runs
        if not 0 <= config.decoder_refine <= 3:
            raise ValueError(f"decoder_refine must be 0 to 3 stages, got {config.decoder_refine}")
        closing = [i + 1 for i, layer in enumerate(self.decoder) if isinstance(layer, nn.ConvTranspose2d)][:3]
        self._refine_after = closing[:config.decoder_refine]
        if config.decoder_refine:
            self.decoder_refine = nn.ModuleList(
                [ResidualBlock(width, width) for width in (c3, c2, c1)[:config.decoder_refine]])
            for block in self.decoder_refine:
                nn.init.zeros_(block.body[-1].weight)
                nn.init.zeros_(block.body[-1].bias)

    # ------------------------------------------------------------------------------------------
    def forward(self, x: Tensor, drop_bottom: Tensor | None = None) -> VQVAEOutput:
        """Encode, quantise and decode a normalised image batch [B, 2, 1024, 128].

        Args:
            x: the batch.
            drop_bottom: optional bool [B]: the notes whose decoder input gets zeros in place of
                their bottom vectors, so that it has their top codes alone to rebuild them from
                (training's `bottom_dropout`). Codes, commitment and codebook updates are unchanged.
        """
        _check_image(x)
        top, bottom = self._quantize(x)
        bottom_vectors = bottom.quantized
        if drop_bottom is not None:
            if drop_bottom.shape != (x.shape[0],):
                raise ValueError(f"drop_bottom must be one flag per note, [{x.shape[0]}], "
                                 f"got {tuple(drop_bottom.shape)}")
            keep = (~drop_bottom.bool()).to(bottom_vectors.dtype).view(-1, 1, 1, 1)
            bottom_vectors = bottom_vectors * keep
        reconstruction = self._decode_vectors(top.quantized, bottom_vectors)
        return VQVAEOutput(reconstruction, top.commitment_loss + bottom.commitment_loss,
                           top.codes, bottom.codes, top.perplexity, bottom.perplexity)

    def _quantize(self, x: Tensor):
        features_bottom = self.encoder_bottom(x)
        features_top = self.encoder_top(features_bottom)
        top = self.quantize_top(self.pre_quantize_top(features_top))
        conditioned = torch.cat([features_bottom, self.decoder_top(top.quantized)], dim=1)
        bottom = self.quantize_bottom(self.pre_quantize_bottom(conditioned))
        return top, bottom

    def _decode_vectors(self, top: Tensor, bottom: Tensor) -> Tensor:
        x = torch.cat([self.upsample_top(top), bottom], dim=1)
        if not self._refine_after:
            return self.decoder(x)
        blocks = iter(self.decoder_refine)
        for index, layer in enumerate(self.decoder):
            x = layer(x)
            if index in self._refine_after:
                x = next(blocks)(x)
        return x

    @torch.no_grad()
    def encode_codes(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised image [B, 2, 1024, 128] -> (top [B, 32, 4], bottom [B, 64, 8]) int64 codes.

        Never updates the codebooks, whatever the module's mode.
        """
        _check_image(x)
        was_training = self.training
        self.quantize_top.train(False)
        self.quantize_bottom.train(False)
        try:
            top, bottom = self._quantize(x)
        finally:
            self.quantize_top.train(was_training)
            self.quantize_bottom.train(was_training)
        return top.codes, bottom.codes

    def decode_codes(self, top: Tensor, bottom: Tensor) -> Tensor:
        """(top [B, 32, 4], bottom [B, 64, 8]) codes -> normalised image [B, 2, 1024, 128]."""
        if tuple(top.shape[1:]) != TOP_SHAPE or tuple(bottom.shape[1:]) != BOTTOM_SHAPE:
            raise ValueError(f"codes must be top [B, {TOP_SHAPE[0]}, {TOP_SHAPE[1]}] and bottom "
                             f"[B, {BOTTOM_SHAPE[0]}, {BOTTOM_SHAPE[1]}], got {tuple(top.shape)} "
                             f"and {tuple(bottom.shape)}")
        return self._decode_vectors(self.quantize_top.lookup(top.long()),
                                    self.quantize_bottom.lookup(bottom.long()))

    def decode_top(self, top: Tensor) -> Tensor:
        """Top codes [B, 32, 4] alone -> normalised image [B, 2, 1024, 128], zeros standing in for
        the bottom vectors: what a decoder trained with bottom dropout learned to rebuild a note
        from (`forward`'s `drop_bottom`); any other decoder gives a poor image."""
        if tuple(top.shape[1:]) != TOP_SHAPE:
            raise ValueError(f"codes must be top [B, {TOP_SHAPE[0]}, {TOP_SHAPE[1]}], got {tuple(top.shape)}")
        vectors = self.quantize_top.lookup(top.long())
        bottom = vectors.new_zeros(vectors.shape[0], vectors.shape[1], *BOTTOM_SHAPE)
        return self._decode_vectors(vectors, bottom)


def _check_image(x: Tensor) -> None:
    if x.dim() != 4 or tuple(x.shape[1:]) != (IMAGE_CHANNELS, IMAGE_FREQ, IMAGE_TIME):
        raise ValueError(f"VQ-VAE input must be [B, {IMAGE_CHANNELS}, {IMAGE_FREQ}, {IMAGE_TIME}], "
                         f"got {tuple(x.shape)}")


def parameter_count(module: nn.Module) -> int:
    """Number of trainable parameters (EMA codebooks are buffers and not counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
