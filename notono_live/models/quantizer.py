"""Vector quantiser with an exponential-moving-average codebook (VQ-VAE-2, as NOTONO uses it).

The codebook is not trained by gradients: each training step moves every code towards the mean of
the encoder vectors assigned to it (decay 0.99), and the encoder is pulled towards its codes by a
commitment loss (weight 0.25). Gradients cross the quantiser with the straight-through estimator.

Codes that fall out of use ("dead" codes) are re-seeded from encoder outputs of the current batch.
Under `torch.distributed` the EMA statistics are all-reduced and the restart vectors are broadcast
from rank 0, so every rank keeps an identical codebook without relying on DDP's buffer broadcast.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..constants import CODEBOOK_DIM, CODEBOOK_SIZE, COMMITMENT_WEIGHT, EMA_DECAY


@dataclass
class QuantizerOutput:
    """Result of quantising one feature map.

    Args:
        quantized: [B, D, H, W] code vectors, straight-through (gradients flow to the input).
        codes: [B, H, W] int64 code indices.
        commitment_loss: scalar, commitment weight × MSE(input, codes) (already weighted).
        perplexity: scalar, exp(entropy) of the code usage in this batch (1 … codebook size).
    """

    quantized: Tensor
    codes: Tensor
    commitment_loss: Tensor
    perplexity: Tensor


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class EMAQuantizer(nn.Module):
    """EMA vector quantiser over channels-first feature maps.

    Args:
        codebook_size: number of codes (paper: 512).
        dim: code dimension (paper: 64).
        decay: EMA decay of the codebook statistics (paper: 0.99).
        commitment_weight: weight of ||z - sg(e)||² (paper: 0.25).
        epsilon: Laplace smoothing of the cluster sizes, so an empty cluster never divides by zero.
        dead_code_threshold: a code whose EMA usage (vectors per batch) falls below this is re-seeded
            from a random encoder output of the current batch; 0 disables restarts.

    Attributes:
        frozen: when True the codebook never changes, whatever the module's mode (a decoder-only
            fine-tune sets it, so that `model.train()` cannot switch the EMA updates back on).
    """

    def __init__(self, codebook_size: int = CODEBOOK_SIZE, dim: int = CODEBOOK_DIM,
                 decay: float = EMA_DECAY, commitment_weight: float = COMMITMENT_WEIGHT,
                 epsilon: float = 1e-5, dead_code_threshold: float = 0.03) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.dim = dim
        self.decay = decay
        self.commitment_weight = commitment_weight
        self.epsilon = epsilon
        self.dead_code_threshold = dead_code_threshold
        self.frozen = False
        self.register_buffer("embed", torch.randn(codebook_size, dim) * 0.1)
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed_avg", self.embed.clone())
        # 0 until the first training batch seeds the codebook from encoder outputs (data-dependent
        # initialisation avoids a codebook far from the encoder's range, the usual cause of collapse)
        self.register_buffer("initialized", torch.zeros((), dtype=torch.long))
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------------------------------
    def forward(self, z: Tensor) -> QuantizerOutput:
        """Quantise z [B, D, H, W]; updates the codebook when the module is training and not frozen.

        Runs in fp32 whatever autocast says (bf16 training): the nearest-code search, the EMA
        statistics and the commitment loss would lose codes to bf16 rounding."""
        with torch.autocast(z.device.type, enabled=False):
            return self._quantise(z.float())

    def _quantise(self, z: Tensor) -> QuantizerOutput:
        b, d, h, w = z.shape
        if d != self.dim:
            raise ValueError(f"quantiser expects {self.dim} channels, got {d}")
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        if self.training and not self.frozen:
            self._update(flat.detach().float())
        codes = self.nearest(flat.detach())
        quantized = F.embedding(codes, self.embed).view(b, h, w, d).permute(0, 3, 1, 2)
        commitment = self.commitment_weight * F.mse_loss(z, quantized.detach())
        quantized = z + (quantized - z).detach()
        counts = torch.bincount(codes, minlength=self.codebook_size).float()
        probs = counts / counts.sum().clamp_min(1)
        perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
        return QuantizerOutput(quantized, codes.view(b, h, w), commitment, perplexity)

    def nearest(self, flat: Tensor) -> Tensor:
        """Index of the nearest code for each row of flat [N, D]."""
        embed = self.embed.to(flat.dtype)
        distance = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ embed.t()
                    + embed.pow(2).sum(1)[None, :])
        return distance.argmin(1)

    def lookup(self, codes: Tensor) -> Tensor:
        """Codes [B, H, W] -> code vectors [B, D, H, W]."""
        return F.embedding(codes, self.embed).permute(0, 3, 1, 2).contiguous()

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _update(self, flat: Tensor) -> None:
        if not bool(self.initialized):
            self._seed_codes(torch.arange(self.codebook_size, device=flat.device), flat)
            self.initialized.fill_(1)
        codes = self.nearest(flat)
        onehot = F.one_hot(codes, self.codebook_size).type(flat.dtype)
        counts = onehot.sum(0)
        sums = onehot.t() @ flat
        if _distributed():
            torch.distributed.all_reduce(counts)
            torch.distributed.all_reduce(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (total + self.codebook_size * self.epsilon) * total
        self.embed.copy_(self.embed_avg / smoothed.unsqueeze(1))
        if self.dead_code_threshold > 0:
            # identical on every rank: the statistics were all-reduced
            dead = torch.nonzero(self.cluster_size < self.dead_code_threshold).flatten()
            if dead.numel():
                self._seed_codes(dead, flat)
                self.restarts.add_(dead.numel())

    def _seed_codes(self, indices: Tensor, flat: Tensor) -> None:
        """Place the codes `indices` on random encoder vectors of this batch (rank 0's under DDP)."""
        n = indices.numel()
        pick = torch.randint(0, flat.shape[0], (n,), device=flat.device)
        vectors = flat[pick]
        if flat.shape[0] < n:
            # fewer vectors than codes to seed: jitter the repeats so they do not coincide
            vectors = vectors + 0.01 * vectors.std().clamp_min(1e-3) * torch.randn_like(vectors)
        if _distributed():
            vectors = vectors.contiguous()
            torch.distributed.broadcast(vectors, src=0)
        self.embed[indices] = vectors.to(self.embed.dtype)
        self.embed_avg[indices] = vectors.to(self.embed.dtype)
        # one vector per batch: a fresh code gets roughly a hundred steps (decay 0.99) to be chosen
        self.cluster_size[indices] = 1.0
