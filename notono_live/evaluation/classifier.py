"""A small instrument-family classifier, the yardstick of "does it sound like a flute?".

It is trained on real corpus notes of the TRAINING split and then asked to recognise generated
sounds; its accuracy on real held-out notes is the reference the generated accuracy is compared with.
It is deliberately simple (multinomial logistic regression on log-mel statistics) so that it is quick
to train on a CPU and does not latch onto artefacts a deep model might.

Features: the log mel power of the Mel-IF image (channel 0) pooled to 64 bands, then per band the mean,
standard deviation and maximum over time, plus the mean over the attack (first 0.25 s) and the
release (last second), which separates plucked, struck and sustained families.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import constants

FEATURE_BANDS = 64
FEATURE_STATISTICS = ("mean", "std", "max", "attack", "release")   # the order of `family_features`
BIAS_RANGES = 4   # `band_bias` averages the 64 bands over this many equal ranges, low to high


def family_features(images: torch.Tensor) -> torch.Tensor:
    """Unnormalised Mel-IF images [B, 2, 1024, 128] -> feature vectors [B, 5 * 64]."""
    if images.dim() != 4 or images.shape[1] != constants.IMAGE_CHANNELS:
        raise ValueError(f"expected images [B, 2, 1024, 128], got {tuple(images.shape)}")
    power = images[:, 0].float()                                   # [B, F, T]
    bands = F.avg_pool1d(power.transpose(1, 2), images.shape[2] // FEATURE_BANDS).transpose(1, 2)  # [B, 64, T]
    frames_per_second = constants.IMAGE_TIME / constants.DURATION_S
    attack = max(1, int(round(0.25 * frames_per_second)))
    release = int(round(1.0 * frames_per_second))
    held = int(round(constants.NOTE_HOLD_S * frames_per_second))
    return torch.cat([bands.mean(2), bands.std(2), bands.amax(2), bands[:, :, :attack].mean(2),
                      bands[:, :, held:held + release].mean(2)], dim=1)


def band_bias(drawn: torch.Tensor, reference: torch.Tensor, ranges: int = BIAS_RANGES) -> dict[str, list[float]]:
    """How drawn sounds' `family_features` differ from paired reference sounds' (row i of each is the
    same note), in the features' own unit (ln Mel power): for each statistic of FEATURE_STATISTICS,
    the mean difference over the notes and over `ranges` equal ranges of the bands, low to high.

    What the family classifier sees a generated sound get wrong: for example a bottom prior whose
    new bottoms put more energy than the reconstructions in the upper bands during the attack shows
    a positive `attack` in the upper ranges."""
    if drawn.shape != reference.shape or drawn.dim() != 2 or drawn.shape[1] != len(FEATURE_STATISTICS) * FEATURE_BANDS:
        raise ValueError(f"expected two paired feature tensors [N, {len(FEATURE_STATISTICS) * FEATURE_BANDS}], "
                         f"got {tuple(drawn.shape)} and {tuple(reference.shape)}")
    if FEATURE_BANDS % ranges:
        raise ValueError(f"{ranges} ranges do not split {FEATURE_BANDS} bands evenly")
    if len(drawn) == 0:
        return {name: [float("nan")] * ranges for name in FEATURE_STATISTICS}
    difference = (drawn.double() - reference.double()).mean(0).view(len(FEATURE_STATISTICS), ranges, -1).mean(2)
    return {name: [round(float(v), 4) for v in row] for name, row in zip(FEATURE_STATISTICS, difference)}


@dataclass
class FamilyClassifier:
    """Multinomial logistic regression on `family_features`, with standardisation.

    Args:
        weight: [num_families, num_features].
        bias: [num_families].
        mean: feature means of the training notes.
        scale: feature standard deviations of the training notes.
        classes: family indices the classifier saw in training (others can still be predicted 0-prob).
    """

    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    scale: torch.Tensor
    classes: tuple[int, ...]

    @classmethod
    def fit(cls, features: torch.Tensor, labels: torch.Tensor, l2: float = 1e-3, steps: int = 300,
            seed: int = 0) -> "FamilyClassifier":
        """Train with full-batch L-BFGS (a convex problem: a few hundred iterations converge)."""
        if len(features) == 0:
            raise ValueError("cannot train the family classifier on no notes")
        features = features.double()
        mean = features.mean(0)
        scale = features.std(0).clamp_min(1e-6) if len(features) > 1 else torch.ones_like(mean)
        x = (features - mean) / scale
        y = labels.long()
        torch.manual_seed(seed)
        weight = torch.zeros(constants.NUM_FAMILIES, x.shape[1], dtype=torch.float64, requires_grad=True)
        bias = torch.zeros(constants.NUM_FAMILIES, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = F.cross_entropy(x @ weight.t() + bias, y) + l2 * weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        return cls(weight.detach(), bias.detach(), mean, scale, tuple(sorted(set(y.tolist()))))

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        x = (features.double() - self.mean) / self.scale
        return (x @ self.weight.t() + self.bias).argmax(1)

    def accuracy(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        if len(features) == 0:
            return float("nan")
        return float((self.predict(features) == labels.long()).double().mean())
