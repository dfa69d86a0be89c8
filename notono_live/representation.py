"""Sound as an image: the Mel-IF representation (Bazin et al., 2020) and its exact linear twin.

A 4-second, 16 kHz note becomes a 2 × 1024 × 128 image: channel 0 is the log power, channel 1 the
instantaneous frequency (IF) divided by π, row 0 the lowest frequency. `MelIF` projects both on a
1024-band mel filterbank whose break frequency is a setting (240 Hz for NOTONO, 700 Hz reproduces
GANSynth) and applies NOTONO's phase thresholding; `LinearIF` keeps the 1024 linear STFT bins and is
exactly invertible, which makes it the check for everything except the mel projection.

Both transforms are batched torch code that runs on whatever device the input lives on (or the one
given); the filterbank and its pseudo-inverses are computed once in float64 and cached per device.
Transforms output *unnormalised* images; `NormalizationStats` maps them to the encoder's ranges.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Iterable

import numpy as np
import torch

from .constants import (
    HOP_LENGTH,
    IF_RANGE,
    IMAGE_CHANNELS,
    IMAGE_FREQ,
    IMAGE_TIME,
    LOG_EPSILON,
    LOG_POWER_RANGE,
    MEL_BREAK_FREQUENCY_HZ,
    MEL_FMAX_HZ,
    MEL_FMIN_HZ,
    MEL_MIN_BAND_WIDTH_BINS,
    N_FFT,
    NUM_SAMPLES,
    PHASE_ITERATIONS,
    PHASE_THRESHOLD_LOG_POWER,
    SAMPLE_RATE,
    STFT_FRAMES,
    WIN_LENGTH,
)

__all__ = [
    "MelIF",
    "LinearIF",
    "NormalizationStats",
    "mel_scale",
    "mel_to_hz",
    "mel_filterbank",
    "mel_band_centres_hz",
    "apply_phase_threshold",
    "pseudo_inverse",
]

TWO_PI = 2.0 * math.pi
# Ridge added to W·Wᵀ (relative to its mean diagonal) when pseudo-inverting the projections: the
# widened low bands of the 240 Hz scale overlap almost completely, so W is rank-deficient. At this
# size the result matches numpy's SVD pinv to float32 precision on real notes (checked while
# developing: identical round-trip SNR and spectral convergence) at a fraction of the cost.
PINV_RIDGE = 1e-6


# ---------------------------------------------------------------------------------------------
# Mel scale and filterbank
# ---------------------------------------------------------------------------------------------

def _mel_q(break_frequency_hz: float) -> float:
    # Q makes 1000 Hz land on 1000 mel whatever the break frequency.
    return 1000.0 / math.log1p(1000.0 / break_frequency_hz)


def mel_scale(hz: np.ndarray | float, break_frequency_hz: float = MEL_BREAK_FREQUENCY_HZ) -> np.ndarray:
    """mel(f) = Q·ln(1 + f/fb), with Q chosen so that 1000 Hz maps to 1000 mel."""
    return _mel_q(break_frequency_hz) * np.log1p(np.asarray(hz, dtype=np.float64) / break_frequency_hz)


def mel_to_hz(mel: np.ndarray | float, break_frequency_hz: float = MEL_BREAK_FREQUENCY_HZ) -> np.ndarray:
    """Inverse of `mel_scale`."""
    return break_frequency_hz * np.expm1(np.asarray(mel, dtype=np.float64) / _mel_q(break_frequency_hz))


def mel_band_centres_hz(break_frequency_hz: float = MEL_BREAK_FREQUENCY_HZ,
                        num_bands: int = IMAGE_FREQ) -> np.ndarray:
    """Centre frequency (Hz) of each mel row, row 0 lowest: equal mel steps over 0–8000 Hz."""
    edges = np.linspace(mel_scale(MEL_FMIN_HZ, break_frequency_hz), mel_scale(MEL_FMAX_HZ, break_frequency_hz),
                        num_bands + 2)
    return mel_to_hz(edges[1:-1], break_frequency_hz)


def mel_filterbank(break_frequency_hz: float = MEL_BREAK_FREQUENCY_HZ,
                   min_band_width_bins: float = MEL_MIN_BAND_WIDTH_BINS,
                   num_bands: int = IMAGE_FREQ) -> np.ndarray:
    """HTK-style triangular filterbank, float64 array [num_bands mel rows, 1024 linear bins].

    Triangles are linear in mel, peak at 1 on their centre and reach 0 on their neighbours' centres
    (no area normalisation, as in GANSynth, so a sinusoid's mel power equals its bin power and the
    reference threshold ln(2e-6) keeps its meaning). Bands narrower than ``min_band_width_bins``
    linear bins are widened symmetrically (in Hz) around their centre to that width, which
    guarantees every row touches at least one bin: the nearest bin is at most half a bin away, so it
    gets weight ≥ 1 − 0.5/(width/2) > 0 for any width above one bin.
    """
    if break_frequency_hz <= 0:
        raise ValueError(f"break_frequency_hz must be positive, got {break_frequency_hz}")
    if min_band_width_bins <= 1.0:
        raise ValueError(f"min_band_width_bins must exceed 1 linear bin so no mel row is empty, "
                         f"got {min_band_width_bins}")
    bin_hz = SAMPLE_RATE / N_FFT
    bin_freqs = np.arange(IMAGE_FREQ, dtype=np.float64) * bin_hz          # Nyquist bin is dropped
    edges_mel = np.linspace(mel_scale(MEL_FMIN_HZ, break_frequency_hz), mel_scale(MEL_FMAX_HZ, break_frequency_hz),
                            num_bands + 2)
    lower_hz = mel_to_hz(edges_mel[:-2], break_frequency_hz)
    centre_hz = mel_to_hz(edges_mel[1:-1], break_frequency_hz)
    upper_hz = mel_to_hz(edges_mel[2:], break_frequency_hz)
    min_width_hz = min_band_width_bins * bin_hz
    narrow = (upper_hz - lower_hz) < min_width_hz
    lower_hz = np.where(narrow, centre_hz - min_width_hz / 2.0, lower_hz)
    upper_hz = np.where(narrow, centre_hz + min_width_hz / 2.0, upper_hz)
    # Work in mel so the triangles follow the HTK shape; edges below 0 Hz (first widened bands)
    # stay well above -fb, where the mel scale is still defined.
    bins_mel = mel_scale(bin_freqs, break_frequency_hz)[None, :]
    lo = mel_scale(lower_hz, break_frequency_hz)[:, None]
    mid = mel_scale(centre_hz, break_frequency_hz)[:, None]
    hi = mel_scale(upper_hz, break_frequency_hz)[:, None]
    rising = (bins_mel - lo) / (mid - lo)
    falling = (hi - bins_mel) / (hi - mid)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    empty = np.flatnonzero(weights.sum(axis=1) <= 0)
    if empty.size:  # cannot happen with width > 1 bin; kept as a guard for future edits
        raise AssertionError(f"mel rows {empty[:5].tolist()} of the filterbank are empty")
    return weights


def pseudo_inverse(weights: np.ndarray, ridge: float = PINV_RIDGE) -> np.ndarray:
    """Pseudo-inverse Wᵀ(W·Wᵀ + λI)⁻¹ of a projection W [rows, bins], float64.

    This is the Moore–Penrose pseudo-inverse in the limit λ → 0. W·Wᵀ + λI is symmetric positive
    definite, so a Cholesky solve (torch's LAPACK, float64) gives it in tens of milliseconds where a
    dense SVD of the 1024×1024 matrix takes seconds. Torch is loaded anyway; scipy.linalg, whose
    banded solver this used, costs the daemon's start about 0.4 s of imports.
    """
    matrix = torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float64))
    gram = matrix @ matrix.T
    gram.diagonal().add_(ridge * float(gram.diagonal().sum()) / gram.shape[0])
    return torch.cholesky_solve(matrix, torch.linalg.cholesky(gram)).T.contiguous().numpy()


@lru_cache(maxsize=8)
def _mel_matrices(break_frequency_hz: float, min_band_width_bins: float) -> dict[str, np.ndarray]:
    """Projections and pseudo-inverses for one mel setting, computed once per process."""
    weights = mel_filterbank(break_frequency_hz, min_band_width_bins)
    # Phase is projected with unit-row-sum weights: a weighted mean keeps IF/π in [-1, 1].
    phase_weights = weights / weights.sum(axis=1, keepdims=True)
    matrices = {"power": weights, "power_pinv": pseudo_inverse(weights),
                "phase": phase_weights, "phase_pinv": pseudo_inverse(phase_weights)}
    for matrix in matrices.values():
        matrix.setflags(write=False)
    return matrices


def apply_phase_threshold(image: torch.Tensor, threshold: float | None) -> torch.Tensor:
    """NOTONO's phase thresholding on a [B, 2, F, T] image (returns a new tensor).

    Where channel 0 (log power) is below ``threshold``, the IF (channel 1) becomes exactly 0 and the
    log power is clamped to the threshold. ``None`` returns the image unchanged.
    """
    if threshold is None:
        return image
    log_power, inst_freq = image[:, 0], image[:, 1]
    silent = log_power < threshold
    return torch.stack([log_power.clamp(min=threshold),
                        torch.where(silent, torch.zeros_like(inst_freq), inst_freq)], dim=1)


# ---------------------------------------------------------------------------------------------
# Shared STFT plumbing
# ---------------------------------------------------------------------------------------------

def _as_batch(audio: torch.Tensor | np.ndarray, device: torch.device | None) -> torch.Tensor:
    if isinstance(audio, np.ndarray):
        audio = torch.from_numpy(np.ascontiguousarray(audio))
    if not isinstance(audio, torch.Tensor):
        raise TypeError(f"audio must be a torch.Tensor or numpy array, got {type(audio).__name__}")
    if audio.dim() == 1:
        audio = audio.unsqueeze(0)
    if audio.dim() != 2 or audio.shape[-1] != NUM_SAMPLES:
        raise ValueError(f"audio must have shape [B, {NUM_SAMPLES}] (4 s at {SAMPLE_RATE} Hz), "
                         f"got {tuple(audio.shape)}")
    if device is not None:
        audio = audio.to(device)
    return audio.float()


def _check_image(image: torch.Tensor, device: torch.device | None) -> torch.Tensor:
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if image.dim() == 3:
        image = image.unsqueeze(0)
    expected = (IMAGE_CHANNELS, IMAGE_FREQ, IMAGE_TIME)
    if image.dim() != 4 or tuple(image.shape[1:]) != expected:
        raise ValueError(f"image must have shape [B, {', '.join(map(str, expected))}], got {tuple(image.shape)}")
    if device is not None:
        image = image.to(device)
    return image.float()


class _STFTTransform:
    """STFT, phase unwrapping and the inverse, shared by MelIF and LinearIF."""

    def __init__(self, phase_threshold: float | None, device: torch.device | str | None) -> None:
        self.phase_threshold = None if phase_threshold is None else float(phase_threshold)
        self.device = None if device is None else torch.device(device)
        self._windows: dict[torch.device, torch.Tensor] = {}

    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        return self.forward(audio)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _window(self, device: torch.device) -> torch.Tensor:
        if device not in self._windows:
            self._windows[device] = torch.hann_window(WIN_LENGTH, periodic=True, dtype=torch.float32, device=device)
        return self._windows[device]

    def _stft(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (power, first-frame phase, wrapped phase increments), each [B, 1024, 126]."""
        spec = torch.stft(audio, n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=WIN_LENGTH,
                          window=self._window(audio.device), center=True, return_complex=True)
        spec = spec[:, :IMAGE_FREQ, :]                    # drop the Nyquist bin
        power = spec.real.square() + spec.imag.square()
        phase = torch.angle(spec)
        # Unwrapping along time then differencing = wrapping each increment into [-π, π).
        increments = torch.remainder(phase[..., 1:] - phase[..., :-1] + math.pi, TWO_PI) - math.pi
        return power, phase[..., :1], increments

    @staticmethod
    def _pad_time(image: torch.Tensor) -> torch.Tensor:
        # 126 STFT frames -> 128 by repeating the last frame.
        extra = IMAGE_TIME - image.shape[-1]
        return torch.cat([image, image[..., -1:].expand(*image.shape[:-1], extra)], dim=-1)

    def _istft(self, power: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """power, phase [B, 1024, 126] linear -> audio [B, 64000]."""
        return self._istft_complex(torch.polar(power.clamp(min=0.0).sqrt(), phase))

    def _istft_complex(self, spec: torch.Tensor) -> torch.Tensor:
        """Complex STFT [B, 1024, 126] without its Nyquist bin -> audio [B, 64000]."""
        nyquist = torch.zeros_like(spec[:, :1, :])        # restore the dropped Nyquist bin as silence
        spec = torch.cat([spec, nyquist], dim=1)
        return torch.istft(spec, n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=WIN_LENGTH,
                           window=self._window(spec.device), center=True, length=NUM_SAMPLES)

    def _consistent_spectrum(self, power: torch.Tensor, phase: torch.Tensor, iterations: int,
                             momentum: float = 0.99) -> torch.Tensor:
        """Fast Griffin-Lim (Perraudin, Balazs & Søndergaard, 2013) from an initial phase: each pass
        resynthesises, re-analyses and keeps the new phase under the fixed magnitude; the momentum
        term extrapolates from the previous pass. Returns the complex STFT [B, 1024, 126] that
        `_istft_complex` turns into audio."""
        magnitude = power.clamp(min=0.0).sqrt()
        spec = torch.polar(magnitude, phase)
        previous = None
        for _ in range(iterations):
            rebuilt = torch.stft(self._istft_complex(spec), n_fft=N_FFT, hop_length=HOP_LENGTH,
                                 win_length=WIN_LENGTH, window=self._window(spec.device), center=True,
                                 return_complex=True)[:, :IMAGE_FREQ, :]
            direction = rebuilt if previous is None else rebuilt - (momentum / (1.0 + momentum)) * previous
            previous = rebuilt
            spec = torch.polar(magnitude, torch.angle(direction))   # 4x faster than exp(1j * angle) on a CPU
        return spec

    def _prepare_inverse(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Threshold, drop the two padding frames, return (log power, phase increments in radians)."""
        image = apply_phase_threshold(_check_image(image, self.device), self.phase_threshold)
        image = image[..., :STFT_FRAMES]
        return image[:, 0], image[:, 1] * math.pi

    def _power_from_log(self, log_power: torch.Tensor) -> torch.Tensor:
        """Undo ln(power + 1e-6). Cells at the threshold floor become exact silence: rebuilt at the
        floor's small power with their constant (IF 0) phase, they would add up, over all bins,
        into a click every hop (a 31 Hz buzz that pYIN hears in the tails of decaying notes)."""
        power = (torch.exp(log_power) - LOG_EPSILON).clamp(min=0.0)
        if self.phase_threshold is not None:
            power = torch.where(log_power <= self.phase_threshold, torch.zeros_like(power), power)
        return power

    @staticmethod
    def _integrate(increments: torch.Tensor) -> torch.Tensor:
        # Cumulative sum in float64: the unwrapped phase reaches hundreds of radians over 126 frames.
        return torch.cumsum(increments.double(), dim=-1).float()


# ---------------------------------------------------------------------------------------------
# Mel-IF
# ---------------------------------------------------------------------------------------------

class MelIF(_STFTTransform):
    """Mel-IF transform with NOTONO's phase thresholding (Bazin et al., 2020), batched in torch.

    ``forward`` maps audio [B, 64000] to an image [B, 2, 1024, 128]: channel 0 is
    ln(mel power + 1e-6) with power projected on HTK triangles (peak 1), channel 1 the mel
    instantaneous frequency / π, where the unwrapped phase is projected with the same triangles
    normalised to unit row sum (a weighted mean, so the IF stays in [-1, 1]). Frame 0 of channel 1
    holds the projected phase itself. Where the log mel power is below ``phase_threshold`` the IF is
    set to 0 and the power clamped to the threshold. ``inverse`` thresholds first (cells at the
    floor are rebuilt as silence), maps power and phase back through the pseudo-inverses of the two
    projections, integrates the IF (cumsum × π), restores the Nyquist bin (as zero) and runs the
    inverse STFT with the same window and hop.

    An IF that a network decoded is not the time derivative of any one phase, so frames rebuilt from
    it partly cancel when overlapped and added: measured on 48 held-out notes through the shipped
    VQ-VAE, the re-analysed reconstruction lost about 2 nats of log mel power (about 9 dB) against the
    decoded image, most at the attack. ``phase_iterations`` passes of fast Griffin-Lim (Perraudin et
    al., 2013: inverse STFT, STFT, keep the magnitude, take the new phase, with momentum) start from
    the integrated phase and make it consistent; one pass gave back almost all of the level. On a
    model-free round trip of real notes one pass also lowers the spectral convergence (0.086 -> 0.047
    over 100 notes) and costs about 1 dB of waveform SNR.

    Args:
        break_frequency_hz: fb in mel(f) = Q·ln(1 + f/fb). 240 Hz is NOTONO's value; 700 Hz
            reproduces GANSynth.
        phase_threshold: log-power threshold, ln(2e-6) ≈ -13.12 as in NOTONO; None disables it.
        min_band_width_bins: low mel bands narrower than this many linear bins are widened to it so
            that no mel row is empty (1.5 as in GANSynth/NOTONO).
        device: device for the transform; None follows the input tensor's device.
        phase_iterations: fast Griffin-Lim passes in ``inverse`` (0: the integrated IF phase as is).
            Only the inverse depends on it, so it is not one of ``settings()``, which key caches of
            ``forward``.
    """

    def __init__(self, break_frequency_hz: float = MEL_BREAK_FREQUENCY_HZ,
                 phase_threshold: float | None = PHASE_THRESHOLD_LOG_POWER,
                 min_band_width_bins: float = MEL_MIN_BAND_WIDTH_BINS,
                 device: torch.device | str | None = None, phase_iterations: int = PHASE_ITERATIONS) -> None:
        super().__init__(phase_threshold, device)
        if isinstance(phase_iterations, bool) or not isinstance(phase_iterations, int) or phase_iterations < 0:
            raise ValueError(f"phase_iterations must be an integer >= 0, got {phase_iterations!r}")
        self.phase_iterations = phase_iterations
        self.break_frequency_hz = float(break_frequency_hz)
        self.min_band_width_bins = float(min_band_width_bins)
        # float64 host copies shared by every MelIF with these settings; device copies made lazily.
        self._host = _mel_matrices(self.break_frequency_hz, self.min_band_width_bins)
        self._device_mats: dict[torch.device, dict[str, torch.Tensor]] = {}

    def settings(self) -> dict:
        """The settings that determine the output, e.g. to key a cache."""
        return {"kind": "mel_if", "break_frequency_hz": self.break_frequency_hz,
                "phase_threshold": self.phase_threshold, "min_band_width_bins": self.min_band_width_bins}

    def __repr__(self) -> str:
        return (f"MelIF(break_frequency_hz={self.break_frequency_hz}, phase_threshold={self.phase_threshold}, "
                f"min_band_width_bins={self.min_band_width_bins})")

    @property
    def filterbank(self) -> np.ndarray:
        """The power filterbank, float64 [1024 mel rows, 1024 linear bins]."""
        return self._host["power"]

    def _mats(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The four projections on `device`, float32. On a CPU they are kept sparse (CSR): the
        filterbanks are triangles, and their pseudo-inverses fall off away from the diagonal, so
        about 2 % of each pseudo-inverse's entries exceed 1e-7 of its largest, and a product with
        those alone is 10x faster than the dense one (0.2 against 2.1 ms for one image on the 2-core
        development CPU) and differs from it at float32's rounding."""
        if device not in self._device_mats:
            mats = {k: torch.from_numpy(v.astype(np.float32)).to(device) for k, v in self._host.items()}
            if device.type == "cpu":
                with warnings.catch_warnings():   # "sparse CSR support is in beta" (the product is stable)
                    warnings.simplefilter("ignore", UserWarning)
                    mats = {k: (m * (m.abs() > 1e-7 * m.abs().max())).to_sparse_csr() for k, m in mats.items()}
            self._device_mats[device] = mats
        return self._device_mats[device]

    @staticmethod
    def _project(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """matrix [rows, n] (dense or CSR) times each image of x [B, n, T]: [B, rows, T]."""
        if matrix.layout != torch.sparse_csr:
            return torch.matmul(matrix, x)
        batch, n, frames = x.shape
        product = matrix @ x.transpose(0, 1).reshape(n, batch * frames)
        return product.reshape(-1, batch, frames).transpose(0, 1)

    @torch.no_grad()
    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        audio = _as_batch(audio, self.device)
        mats = self._mats(audio.device)
        power, first_phase, increments = self._stft(audio)
        log_mel_power = torch.log(self._project(mats["power"], power) + LOG_EPSILON)
        mel_phase = torch.cat([first_phase, increments], dim=-1)
        # a weighted mean of values in [-π, π]: in [-1, 1] but for float rounding, which is clamped
        mel_if = (self._project(mats["phase"], mel_phase) / math.pi).clamp(-1.0, 1.0)
        image = self._pad_time(torch.stack([log_mel_power, mel_if], dim=1))
        return apply_phase_threshold(image, self.phase_threshold)

    @torch.no_grad()
    def inverse(self, image: torch.Tensor) -> torch.Tensor:
        log_mel_power, mel_increments = self._prepare_inverse(image)
        mats = self._mats(log_mel_power.device)
        mel_power = self._power_from_log(log_mel_power)
        power = self._project(mats["power_pinv"], mel_power)
        mel_phase = self._integrate(mel_increments)
        phase = self._project(mats["phase_pinv"], mel_phase)
        return self._istft_complex(self._consistent_spectrum(power, phase, self.phase_iterations))


# ---------------------------------------------------------------------------------------------
# Linear IF (exactly invertible check)
# ---------------------------------------------------------------------------------------------

class LinearIF(_STFTTransform):
    """Linear-frequency log-power + IF image, the exactly invertible twin of `MelIF`.

    Same layout and API as `MelIF` but with the 1024 linear STFT bins as rows: channel 0 is
    ln(|X|² + 1e-6) (twice the log magnitude, so it shares MelIF's units and threshold), channel 1
    the wrapped phase increment / π with frame 0 holding the phase. Without thresholding the round
    trip loses only the Nyquist bin and float rounding.

    Args:
        phase_threshold: log-power threshold as in `MelIF`; None (the default here) disables it,
            which keeps the transform exactly invertible.
        device: device for the transform; None follows the input tensor's device.
    """

    def __init__(self, phase_threshold: float | None = None, device: torch.device | str | None = None) -> None:
        super().__init__(phase_threshold, device)

    def settings(self) -> dict:
        return {"kind": "linear_if", "phase_threshold": self.phase_threshold}

    def __repr__(self) -> str:
        return f"LinearIF(phase_threshold={self.phase_threshold})"

    @torch.no_grad()
    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        audio = _as_batch(audio, self.device)
        power, first_phase, increments = self._stft(audio)
        log_power = torch.log(power + LOG_EPSILON)
        inst_freq = torch.cat([first_phase, increments], dim=-1) / math.pi
        image = self._pad_time(torch.stack([log_power, inst_freq], dim=1))
        return apply_phase_threshold(image, self.phase_threshold)

    @torch.no_grad()
    def inverse(self, image: torch.Tensor) -> torch.Tensor:
        log_power, increments = self._prepare_inverse(image)
        power = self._power_from_log(log_power)
        return self._istft(power, self._integrate(increments))


# ---------------------------------------------------------------------------------------------
# Normalisation statistics
# ---------------------------------------------------------------------------------------------

@dataclass
class NormalizationStats:
    """Min/max of each image channel over the training set, stored with a model.

    ``normalize`` maps the log power to [-0.8, 0.8] and the IF to [-1, 1]; ``denormalize`` undoes it.
    Values outside the training range map outside the target ranges (no clipping) so the mapping
    stays exactly invertible.

    Args:
        log_power_min: smallest channel-0 value seen (the phase threshold, for thresholded images).
        log_power_max: largest channel-0 value seen.
        if_min: smallest channel-1 value seen.
        if_max: largest channel-1 value seen.
    """

    log_power_min: float
    log_power_max: float
    if_min: float
    if_max: float

    def __post_init__(self) -> None:
        for name in ("log_power_min", "log_power_max", "if_min", "if_max"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"NormalizationStats.{name} must be finite, got {value}")
            setattr(self, name, value)
        if not self.log_power_max > self.log_power_min:
            raise ValueError(f"NormalizationStats: log_power_max ({self.log_power_max}) must exceed "
                             f"log_power_min ({self.log_power_min})")
        if not self.if_max > self.if_min:
            raise ValueError(f"NormalizationStats: if_max ({self.if_max}) must exceed if_min ({self.if_min})")

    def _affine(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel scale and offset of `normalize`, shaped to broadcast over [.., 2, F, T]."""
        (p_lo, p_hi), (i_lo, i_hi) = LOG_POWER_RANGE, IF_RANGE
        p_scale = (p_hi - p_lo) / (self.log_power_max - self.log_power_min)
        i_scale = (i_hi - i_lo) / (self.if_max - self.if_min)
        scale = torch.tensor([p_scale, i_scale], dtype=like.dtype, device=like.device)
        offset = torch.tensor([p_lo - self.log_power_min * p_scale, i_lo - self.if_min * i_scale],
                              dtype=like.dtype, device=like.device)
        return scale.view(2, 1, 1), offset.view(2, 1, 1)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """Unnormalised image [..., 2, F, T] -> encoder input."""
        scale, offset = self._affine(image)
        return image * scale + offset

    def denormalize(self, image: torch.Tensor) -> torch.Tensor:
        """Inverse of `normalize`."""
        scale, offset = self._affine(image)
        return (image - offset) / scale

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "NormalizationStats":
        fields = ("log_power_min", "log_power_max", "if_min", "if_max")
        missing = [name for name in fields if name not in data]
        if missing:
            raise ValueError(f"normalisation statistics lack {', '.join(missing)} (got keys {sorted(data)})")
        return cls(**{name: float(data[name]) for name in fields})

    @classmethod
    def compute(cls, images: Iterable[torch.Tensor | np.ndarray]) -> "NormalizationStats":
        """Min/max per channel over an iterable of images [2, F, T] or batches [B, 2, F, T]."""
        lows = [math.inf, math.inf]
        highs = [-math.inf, -math.inf]
        count = 0
        for image in images:
            image = torch.as_tensor(image)
            if image.dim() == 3:
                image = image.unsqueeze(0)
            if image.dim() != 4 or image.shape[1] != IMAGE_CHANNELS:
                raise ValueError(f"expected images [2, F, T] or [B, 2, F, T], got {tuple(image.shape)}")
            for channel in range(IMAGE_CHANNELS):
                values = image[:, channel].float()
                lows[channel] = min(lows[channel], float(values.min()))
                highs[channel] = max(highs[channel], float(values.max()))
            count += 1
        if count == 0:
            raise ValueError("cannot compute normalisation statistics from no images")
        return cls(log_power_min=lows[0], log_power_max=highs[0], if_min=lows[1], if_max=highs[1])
