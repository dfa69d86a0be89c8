"""Turning a decoded sound into the files a Live clip needs: a WAV at the client's rate and a PNG.

The PNG is a spectrogram on the same mel scale as the model's images (break frequency 240 Hz,
0-8 kHz, row 0 at the bottom of the picture = lowest frequency), so the codemap grid drawn over it
lines up with the cells the device edits: thin lines for the bottom map (64 x 8), thick ones for
the top map (32 x 4).
"""
from __future__ import annotations

import io
import math

import numpy as np
import soxr
from PIL import Image

from ..constants import (BOTTOM_SHAPE, MEL_BREAK_FREQUENCY_HZ, MEL_FMAX_HZ, NUM_SAMPLES, SAMPLE_RATE,
                         TOP_SHAPE)

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
IMAGE_WIDTH = 256    # 2 px per analysis frame; a top column is 64 px, a bottom column 32 px
IMAGE_HEIGHT = 256   # 1 px per analysis row; a top row is 8 px, a bottom row 4 px
_ANALYSIS_ROWS = 256
_N_FFT = 1024
_HOP = NUM_SAMPLES // 128   # 128 analysis frames over 4 s, like the model's image
_DYNAMIC_RANGE_DB = 80.0


def note_name(pitch: int) -> str:
    """MIDI pitch -> note name in Live's convention (C3 = 60)."""
    return f"{NOTE_NAMES[int(pitch) % 12]}{int(pitch) // 12 - 2}"


def clip_label(family: str, pitch: int, sound: int, version: int) -> str:
    """Clip name for a version, e.g. 'organ C3 #2 v4'."""
    return f"{family} {note_name(pitch)} #{sound} v{version}"


def resample_for_output(audio: np.ndarray, sample_rate: int, clip: bool = True) -> np.ndarray:
    """16 kHz mono float32 -> the client's rate, with soxr's high-quality resampler, clipped to [-1, 1]
    unless `clip` is False (the engine levels it first: `levels.normalise`)."""
    audio = np.asarray(audio, dtype=np.float32)
    if sample_rate != SAMPLE_RATE:
        audio = soxr.resample(audio, SAMPLE_RATE, sample_rate, quality="HQ").astype(np.float32)
    return np.clip(audio, -1.0, 1.0) if clip else audio


def mel_of_hz(f: np.ndarray | float, break_hz: float = MEL_BREAK_FREQUENCY_HZ) -> np.ndarray:
    q = 1000.0 / math.log1p(1000.0 / break_hz)
    return q * np.log1p(np.asarray(f, dtype=np.float64) / break_hz)


def hz_of_mel(m: np.ndarray | float, break_hz: float = MEL_BREAK_FREQUENCY_HZ) -> np.ndarray:
    q = 1000.0 / math.log1p(1000.0 / break_hz)
    return break_hz * np.expm1(np.asarray(m, dtype=np.float64) / q)


def row_frequency_edges(rows: int) -> np.ndarray:
    """Hz at the edges of `rows` equal mel bands over 0-8 kHz (rows + 1 values, lowest first)."""
    return hz_of_mel(np.linspace(0.0, float(mel_of_hz(MEL_FMAX_HZ)), rows + 1))


def _stft_magnitude(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)[:NUM_SAMPLES]
    audio = np.pad(audio, (0, NUM_SAMPLES - len(audio)))
    padded = np.pad(audio, (_N_FFT // 2, _N_FFT // 2), mode="reflect")
    starts = np.arange(128) * _HOP
    frames = padded[starts[:, None] + np.arange(_N_FFT)[None, :]] * np.hanning(_N_FFT).astype(np.float32)
    return np.abs(np.fft.rfft(frames, axis=1)).T   # (bins, 128)


def spectrogram_png(audio: np.ndarray) -> bytes:
    """PNG bytes of a mel spectrogram of a 16 kHz 4 s sound with the codemap grids over it."""
    magnitude = _stft_magnitude(audio)
    bins = _ROW_BINS
    lo = np.clip(np.floor(bins).astype(int), 0, magnitude.shape[0] - 2)
    frac = (bins - lo)[:, None]
    rows = magnitude[lo] * (1 - frac) + magnitude[lo + 1] * frac          # (256, 128), row 0 lowest
    db = 20 * np.log10(np.maximum(rows, 1e-9))
    db -= max(float(db.max()), -100.0)
    level = np.clip(1.0 + db / _DYNAMIC_RANGE_DB, 0.0, 1.0)[::-1]          # picture row 0 = top = highest
    index = (level * 255).astype(np.uint8)
    index = np.repeat(np.repeat(index, IMAGE_HEIGHT // _ANALYSIS_ROWS, axis=0), IMAGE_WIDTH // 128, axis=1)
    rgb = _PALETTE[index]
    for shape, alpha in ((BOTTOM_SHAPE, 0.2), (TOP_SHAPE, 0.6)):
        n_rows, n_cols = shape
        ys = [round(r * IMAGE_HEIGHT / n_rows) for r in range(1, n_rows)]
        xs = [round(c * IMAGE_WIDTH / n_cols) for c in range(1, n_cols)]
        rgb[ys, :, :] = (rgb[ys, :, :] * (1 - alpha) + 255 * alpha).astype(np.uint8)
        rgb[:, xs, :] = (rgb[:, xs, :] * (1 - alpha) + 255 * alpha).astype(np.uint8)
    image = Image.fromarray(rgb, "RGB")
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


_ERASE_FFT, _ERASE_HOP = 2048, 512   # the method's window and hop


def _region_stft(audio: np.ndarray, layer_shape: tuple[int, int], row: int, col: int, height: int, width: int):
    """The STFT of a 16 kHz 4 s sound with the method's window and hop (2048 / 512), and the boolean
    (frequency, time) selections of a codemap region's time-frequency area."""
    import torch   # already loaded with the model; scipy.signal would add ~0.6 s to the daemon's start

    n_fft, hop = _ERASE_FFT, _ERASE_HOP
    n_rows, n_cols = layer_shape
    audio = np.asarray(audio, dtype=np.float32)
    window = torch.hann_window(n_fft, periodic=True)
    spec = torch.stft(torch.from_numpy(audio), n_fft, hop, window=window, center=True, pad_mode="constant",
                      return_complex=True).numpy()
    freqs = np.arange(spec.shape[0]) * (SAMPLE_RATE / n_fft)
    times = np.arange(spec.shape[1]) * (hop / SAMPLE_RATE)   # frame t is centred on sample t * hop
    edges = row_frequency_edges(n_rows)
    f_lo, f_hi = edges[row], edges[row + height]
    seconds_per_col = (NUM_SAMPLES / SAMPLE_RATE) / n_cols
    t_lo, t_hi = col * seconds_per_col, (col + width) * seconds_per_col
    # the top row and the last column reach to the end of the axis
    f_sel = (freqs >= f_lo) & ((freqs < f_hi) if row + height < n_rows else True)
    t_sel = (times >= t_lo) & ((times < t_hi) if col + width < n_cols else True)
    return spec, f_sel, t_sel, window


def attenuate_region(audio: np.ndarray, layer_shape: tuple[int, int], row: int, col: int, height: int,
                     width: int, amount_db: float) -> np.ndarray:
    """Lower the level of a 16 kHz 4 s sound by `amount_db` inside the time-frequency area of a codemap
    region (the erase tool). Works on the STFT with the method's window and hop (2048 / 512), so the
    rest of the sound comes back unchanged up to rounding."""
    import torch

    spec, f_sel, t_sel, window = _region_stft(audio, layer_shape, row, col, height, width)
    spec[np.ix_(f_sel, t_sel)] *= 10.0 ** (-float(amount_db) / 20.0)
    out = torch.istft(torch.from_numpy(spec), _ERASE_FFT, _ERASE_HOP, window=window, center=True,
                      length=len(audio))
    return out.numpy().astype(np.float32)


def region_power(audio: np.ndarray, layer_shape: tuple[int, int], row: int, col: int, height: int,
                 width: int) -> float:
    """Summed STFT power of a 16 kHz sound inside a codemap region's time-frequency area (the area
    `attenuate_region` lowers): how much an erase lowered a region is the ratio of two of these."""
    spec, f_sel, t_sel, _ = _region_stft(audio, layer_shape, row, col, height, width)
    return float(np.sum(np.abs(spec[np.ix_(f_sel, t_sel)]) ** 2))


def _row_bins() -> np.ndarray:
    edges = row_frequency_edges(_ANALYSIS_ROWS)
    return ((edges[:-1] + edges[1:]) / 2) / (SAMPLE_RATE / _N_FFT)


_ROW_BINS = _row_bins()   # fractional STFT bin at the centre of each picture row


def _palette() -> np.ndarray:
    # a dark-to-warm palette: black -> purple -> orange -> pale yellow
    level = np.linspace(0.0, 1.0, 256)
    rgb = np.stack([np.clip(1.6 * level, 0, 1), np.clip(1.4 * level - 0.35, 0, 1) ** 1.2,
                    np.clip(0.6 * np.sin(np.pi * level) + 0.5 * level ** 3, 0, 1)], axis=-1)
    return (rgb * 255).astype(np.uint8)


_PALETTE = _palette()
