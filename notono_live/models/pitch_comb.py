"""Where a pitch's harmonics fall in the Mel image, given to the priors at every position
(`PriorConfig.pitch_comb`; ours, not the paper's).

A code stands for a patch of the Mel-IF image: a bottom cell for 16 Mel rows, a top cell for 32.
Whether a sound is on its pitch depends on which codes put energy on the rows of its fundamental
and harmonics, and on where inside each patch it lies. With the pitch only as an embedding, a prior
has to learn that geometry separately for each of the 61 pitches and every row. The comb states it:
for each pitch, the Mel-image profile of a harmonic tone (a Gaussian line one linear STFT bin wide
at the fundamental and at each harmonic up to 8 kHz, taken through the representation's own Mel
filterbank), in two channels (the fundamental; the other harmonics, weighted 1/h); each decoder
position gets the profile over the Mel rows its cells cover. A linear map of it, zero at
initialisation, is added to the position's decoder input, and only for the rows that keep their
labels: a row whose labels are dropped (classifier-free guidance's unconditioned half) gets none.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..codemaps import BOTTOM_ORDER, TOP_ORDER
from ..constants import (BOTTOM_SHAPE, IMAGE_FREQ, MEL_FMAX_HZ, N_FFT, NUM_PITCHES, PITCH_MIN, SAMPLE_RATE,
                         TOP_SHAPE)

CHANNELS = 2   # the fundamental; the other harmonics


@lru_cache(maxsize=1)
def mel_profiles() -> np.ndarray:
    """[61 pitches, 2 channels, 1024 Mel rows] float32, each channel scaled to a maximum of 1."""
    from ..representation import mel_filterbank

    bank = mel_filterbank()                                       # [1024 Mel rows, 1024 linear bins]
    bin_hz = SAMPLE_RATE / N_FFT
    bins = np.arange(bank.shape[1], dtype=np.float64) * bin_hz
    out = np.zeros((NUM_PITCHES, CHANNELS, IMAGE_FREQ), dtype=np.float64)
    for index in range(NUM_PITCHES):
        f0 = 440.0 * 2.0 ** ((PITCH_MIN + index - 69) / 12.0)
        lines = np.zeros((CHANNELS, bins.size))
        for h in range(1, int(MEL_FMAX_HZ // f0) + 1):
            lines[0 if h == 1 else 1] += np.exp(-0.5 * ((bins - h * f0) / bin_hz) ** 2) / h
        mel = lines @ bank.T
        out[index] = mel / np.maximum(mel.max(axis=1, keepdims=True), 1e-12)
    return out.astype(np.float32)


def position_features(layer: str, group: int = 1) -> np.ndarray:
    """[61 pitches, decoder positions, 2 × rows] float32: the profile over the Mel rows that each
    decoder position's cells cover (a top cell or a group of bottom cells under one: 32 rows; one
    bottom cell: 16), position in the priors' order."""
    order, shape = (TOP_ORDER, TOP_SHAPE) if layer == "top" else (BOTTOM_ORDER, BOTTOM_SHAPE)
    per_row = IMAGE_FREQ // shape[0]
    cells = order.reshape(-1, group if layer == "bottom" else 1, 2)   # [positions, cells, (row, col)]
    low, high = cells[:, :, 0].min(axis=1) * per_row, (cells[:, :, 0].max(axis=1) + 1) * per_row
    width = int((high - low).max())
    if not np.all(high - low == width):
        raise ValueError(f"the cells of a {layer} position with groups of {group} do not cover one band")
    rows = low[:, None] + np.arange(width)                             # [positions, width]
    profiles = mel_profiles()[:, :, rows]                              # [61, 2, positions, width]
    return np.ascontiguousarray(profiles.transpose(0, 2, 1, 3).reshape(NUM_PITCHES, len(rows), -1))
