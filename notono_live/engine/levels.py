"""Every rendered WAV at one level: DC removed, loudness-normalised, true peak under a ceiling.

The decoder gives sounds at whatever level the codes imply: on the project's corpus, decoded notes
span -38 to -9 LUFS, some peak above 0 dBFS, and a few carry a DC offset of up to -39 dBFS. Before a
version's WAV is written, `normalise` takes the audio at the client's rate and:

1. removes DC and sub-audio drift (a 2nd-order Butterworth high-pass at `HIGH_PASS_HZ`, run forwards
   and backwards so it shifts no phase; MIDI 24 is 32.7 Hz, well above it);
2. brings the integrated loudness (ITU-R BS.1770-4, with pyloudnorm) to `TARGET_LUFS`;
3. holds the true peak (the peak of the signal oversampled to at least 192 kHz, as BS.1770-4's
   annex 2 measures it) at or below `TRUE_PEAK_CEILING_DBTP`. Where the gain alone would pass it, a
   short look-ahead limiter lowers only the peaks, under a gain raised to make up the loudness it
   takes (`_limited_to_target`). On decoded corpus
   notes the peak-to-loudness ratio has a median of 13 dB and a maximum of 23 dB (a mallet), so at
   -20 LUFS and -1 dBTP only the most percussive sounds are limited, by a few dB.

A sound too quiet to measure (below BS.1770's absolute gate of -70 LUFS: silence, or a region erased
to nothing) is written as it is, DC removed. What the decoder gave (its loudness and true peak once
its DC is removed, and that DC) and the gain applied are returned, and the engine stores them in the
version's metadata (`params["level"]`), so the decoder's own level can always be recovered:
raw = wav / 10 ** (gain_db / 20). The decoded sound is measured once, DC-free, and those figures
also serve the gain: measuring it again with its DC (which BS.1770's K-weighting ignores but for
the step where the sound starts) would double the levelling's measuring for figures only the
metadata keeps.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

TARGET_LUFS = -20.0             # integrated loudness of every rendered WAV
TRUE_PEAK_CEILING_DBTP = -1.0   # true peak of every rendered WAV stays below this
HIGH_PASS_HZ = 10.0
SILENCE_LUFS = -70.0            # BS.1770's absolute gate: below it there is nothing to measure
MAX_GAIN_DB = 40.0              # a faint render is raised at most this much
LIMITER_WINDOW_S = 0.0015       # look-ahead / hold of the peak limiter
_MARGIN_DB = 0.1                # aim a little under the ceiling: 24-bit rounding, resampling
_OVERSAMPLED_RATE = 192_000


@dataclass(frozen=True)
class Level:
    """How a render was levelled: what it measured before, and what was done.

    Args:
        loudness_lufs: integrated loudness as decoded, DC removed (None below the -70 LUFS gate).
        true_peak_dbtp: true peak as decoded, DC removed.
        dc_dbfs: the decoded sound's DC offset (its mean), in dBFS.
        gain_db: the gain applied after DC removal (0 for a silent render).
        limited_db: the most the limiter lowered any peak (0 when it did not act).
        final_lufs: integrated loudness of the WAV (None when silent).
        final_true_peak_dbtp: true peak of the WAV.
        target_lufs, ceiling_dbtp: the targets it was levelled to.
    """

    loudness_lufs: float | None
    true_peak_dbtp: float
    dc_dbfs: float
    gain_db: float
    limited_db: float
    final_lufs: float | None
    final_true_peak_dbtp: float
    target_lufs: float = TARGET_LUFS
    ceiling_dbtp: float = TRUE_PEAK_CEILING_DBTP

    def to_dict(self) -> dict:
        return {k: (None if v is None else round(float(v), 2)) for k, v in asdict(self).items()}


def _db(value: float) -> float:
    return 20.0 * math.log10(max(float(value), 1e-12))


def _oversampled(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    """`audio` resampled to an integer multiple of its rate of at least 192 kHz, and that factor."""
    import soxr

    audio = np.asarray(audio, dtype=np.float64)
    factor = max(1, math.ceil(_OVERSAMPLED_RATE / sample_rate))
    if factor > 1:
        audio = soxr.resample(audio, sample_rate, sample_rate * factor, quality="HQ")
    return audio, factor


def true_peak(audio: np.ndarray, sample_rate: int) -> float:
    """Largest absolute value of `audio` oversampled to at least 192 kHz (linear, not dB)."""
    return _largest(_oversampled(audio, sample_rate)[0])


def _largest(over: np.ndarray) -> float:
    """Largest absolute value of an oversampled signal, without an |x| copy of it."""
    return float(max(over.max(), -over.min())) if over.size else 0.0


def loudness(audio: np.ndarray, sample_rate: int) -> float | None:
    """Integrated loudness in LUFS (BS.1770-4), or None when the sound is below the -70 LUFS gate."""
    return measure_loudness(audio, sample_rate)[0]


def measure_loudness(audio: np.ndarray, sample_rate: int) -> tuple[float | None, np.ndarray | None]:
    """`loudness`, and the loudness of each 400 ms gating block (pyloudnorm's `blockwise_loudness`,
    None where the installed pyloudnorm does not keep it), from which `gated_loudness` gives the
    loudness of the sound under any gain without filtering it again."""
    import pyloudnorm

    meter = pyloudnorm.Meter(sample_rate)
    value = meter.integrated_loudness(np.asarray(audio, dtype=np.float64))
    blocks = getattr(meter, "blockwise_loudness", None)
    blocks = None if blocks is None or len(blocks) == 0 else np.asarray(blocks, dtype=np.float64)
    return (float(value) if math.isfinite(value) and value > SILENCE_LUFS else None), blocks


def gated_loudness(blocks: np.ndarray, gain_db: float = 0.0) -> float | None:
    """BS.1770-4's integrated loudness of a mono sound whose gating blocks measured `blocks` (LUFS),
    once `gain_db` is applied: the filters are linear, so each block moves by the gain, and only the
    gates (absolute at -70 LUFS, then relative at 10 LU under the loudness of the blocks that pass
    it) choose again. None below the absolute gate. Equal to measuring the scaled sound again (a
    test checks it against pyloudnorm's own measurement)."""
    shifted = blocks + gain_db
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        power = 10.0 ** ((shifted + 0.691) / 10.0)
        absolute = shifted >= SILENCE_LUFS
        if not absolute.any():
            return None
        relative = -0.691 + 10.0 * math.log10(float(np.mean(power[absolute]))) - 10.0
        kept = (shifted > relative) & (shifted > SILENCE_LUFS)
        if not kept.any():
            return None
        value = -0.691 + 10.0 * math.log10(float(np.mean(power[kept])))
    return value if math.isfinite(value) and value > SILENCE_LUFS else None


def _gain_to_target(blocks: np.ndarray, measured: float, limit_db: float) -> tuple[float, float | None]:
    """The gain (at most `limit_db`) that brings a sound measured at `measured` LUFS, with these
    gating blocks, to TARGET_LUFS, and its loudness then. A gain moves the loudness by itself except
    where blocks cross the absolute gate, so a few corrections settle it; the closest is kept."""
    gain = min(TARGET_LUFS - measured, limit_db)
    best: tuple[float, float, float | None] | None = None
    for _ in range(6):
        now = gated_loudness(blocks, gain)
        if now is None:
            break
        miss = abs(now - TARGET_LUFS)
        if best is None or miss < best[0]:
            best = (miss, gain, now)
        if miss < 0.01 or (gain >= limit_db and now < TARGET_LUFS):
            break
        gain = min(gain + TARGET_LUFS - now, limit_db)
    return (gain, None) if best is None else (best[1], best[2])


def dc_dbfs(audio: np.ndarray) -> float:
    """The DC offset (mean) of `audio` in dBFS."""
    return _db(abs(float(np.mean(audio)))) if len(audio) else -240.0


def remove_dc(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """`audio` high-passed at HIGH_PASS_HZ, zero phase. The sound is taken as silent before and after
    (half a second of zeros each side while filtering), so a note that starts on a non-zero sample
    rings out into the padding rather than leaving an offset over the whole sound."""
    from scipy.signal import butter, sosfiltfilt

    sos = butter(2, HIGH_PASS_HZ, btype="highpass", fs=sample_rate, output="sos")
    pad = sample_rate // 2
    padded = np.pad(np.asarray(audio, dtype=np.float64), (pad, pad))
    return sosfiltfilt(sos, padded, padtype=None)[pad: pad + len(audio)]


def _sample_peaks(over: np.ndarray, factor: int, length: int) -> np.ndarray:
    """For each of `length` samples, the largest |value| of their oversampled signal `over`
    (`_oversampled`, `factor` values a sample) in its interval: their maximum is the true peak, and
    they scale with any gain applied."""
    over = over[: length * factor]
    if len(over) < length * factor:
        over = np.pad(over, (0, length * factor - len(over)))
    phases = over.reshape(length, factor)
    peaks = np.abs(phases[:, 0])
    for k in range(1, factor):   # column by column: numpy's max over a short last axis is 5x slower
        np.maximum(peaks, np.abs(phases[:, k]), out=peaks)
    return peaks


def _limiter_gain(peaks: np.ndarray, sample_rate: int, ceiling: float) -> np.ndarray:
    """A look-ahead peak limiter's smooth gain for a sound whose samples peak at `peaks` (its
    oversampled signal then stays under `ceiling`, linear)."""
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    needed = np.minimum(1.0, ceiling / np.maximum(peaks, 1e-12))
    width = max(3, int(LIMITER_WINDOW_S * sample_rate) | 1)
    # the minimum over 2w + 1 samples, averaged over w + 1: never above what any sample needs
    return uniform_filter1d(minimum_filter1d(needed, 2 * width + 1, mode="nearest"), width + 1, mode="nearest")


def _limited_to_target(base: np.ndarray, peaks: np.ndarray, sample_rate: int, gain_db: float,
                       ceiling: float) -> tuple[np.ndarray, float, float]:
    """`base` (DC-free, unlevelled) under the gain that, with the limiter after it, reaches
    TARGET_LUFS: the limiter takes loudness away as the gain rises, so the gain is found by the
    secant method on the limited sound's loudness, starting from `gain_db` (what the loudness alone
    asked for). Each try limits `base` afresh (one pass of the limiter on the result, never a
    limiter on a limited sound) and costs a loudness measurement: the peaks are measured once and
    scale with the gain. Returns the limited sound, the gain and the deepest gain reduction (dB)."""
    tries: list[tuple[float, float | None, np.ndarray, np.ndarray]] = []   # (gain dB, loudness, sound, limiter gain)
    gain = gain_db
    for _ in range(6):
        scale = 10.0 ** (gain / 20.0)
        curve = _limiter_gain(peaks * scale, sample_rate, ceiling)
        sound = base * (scale * curve)
        now = loudness(sound, sample_rate)
        tries.append((gain, now, sound, curve))
        if now is None or abs(now - TARGET_LUFS) < 0.1 or (gain >= MAX_GAIN_DB and now < TARGET_LUFS):
            break
        if len(tries) == 1 or tries[-1][1] == tries[-2][1]:
            step = TARGET_LUFS - now                       # as if the gain moved the loudness dB for dB
        else:
            slope = (tries[-1][1] - tries[-2][1]) / (tries[-1][0] - tries[-2][0])
            step = (TARGET_LUFS - now) / max(slope, 0.05)  # the limiter flattens the slope, never reverses it
        gain = min(gain + step, MAX_GAIN_DB)
    gain, _, sound, curve = min(tries, key=lambda t: math.inf if t[1] is None else abs(t[1] - TARGET_LUFS))
    return sound, gain, -_db(float(curve.min()))


def normalise(audio: np.ndarray, sample_rate: int, dc_removed: float | None = None) -> tuple[np.ndarray, Level]:
    """`audio` (mono float, any level) DC-free, at TARGET_LUFS, true peak under the ceiling, as
    float32 in [-1, 1]; and the `Level` it had and was given.

    `dc_removed`: None, or the DC (`dc_dbfs`) that was already removed from `audio` (`remove_dc`)
    before it was resampled to `sample_rate`. The engine removes it at the decoder's 16 kHz, where
    the filter runs over 2.75 times fewer samples; the resampler passes everything below 10 Hz as
    it is, so the levels come out alike (a test compares both orders)."""
    audio = np.nan_to_num(np.asarray(audio, dtype=np.float64))
    if dc_removed is None:
        before_dc = dc_dbfs(audio)
        out = remove_dc(audio, sample_rate)
    else:
        before_dc, out = dc_removed, audio
    measured, blocks = measure_loudness(out, sample_rate)
    over, factor = _oversampled(out, sample_rate)   # once: the true peak scales with the gain
    decoded_peak = _largest(over)
    gain_db = limited_db = 0.0
    # what `out` measures now, None once a change makes it stale: each measurement (a few ms at
    # 44.1 kHz) is taken once, and the final figures reuse the last ones when nothing changed since;
    # a gain's loudness comes from the gating blocks (`gated_loudness`) instead of a new measurement
    now_lufs: float | None = None
    now_peak: float | None = decoded_peak
    if measured is not None:
        if blocks is not None:
            gain_db, now_lufs = _gain_to_target(blocks, measured, MAX_GAIN_DB)
        else:
            gain_db = min(TARGET_LUFS - measured, MAX_GAIN_DB)
        ceiling = 10.0 ** ((TRUE_PEAK_CEILING_DBTP - _MARGIN_DB) / 20.0)
        scale = 10.0 ** (gain_db / 20.0)
        now_peak = decoded_peak * scale
        if now_peak > ceiling:
            # the limiter lowers only the peaks, with the gain raised to give back the loudness it takes
            out, gain_db, limited_db = _limited_to_target(out, _sample_peaks(over, factor, len(out)), sample_rate,
                                                          gain_db, ceiling * 10.0 ** (-_MARGIN_DB / 20.0))
            out = remove_dc(out, sample_rate)   # a time-varying limiter gain can leave a little DC again
            now_lufs = now_peak = None
        else:
            out = out * scale
            if now_lufs is None:
                now_lufs = loudness(out, sample_rate)
        if now_peak is None:
            now_peak = true_peak(out, sample_rate)
        if now_peak > ceiling:   # a last guard: never above the ceiling, even if the loudness falls short
            out = out * (ceiling / now_peak)
            now_lufs, now_peak = None, ceiling
    clipped = np.clip(out, -1.0, 1.0)
    if now_peak is None or not np.array_equal(clipped, out):
        now_lufs = now_peak = None   # silent, or clipped: measured as written
    out = clipped.astype(np.float32)
    final_lufs = now_lufs if now_lufs is not None else loudness(out, sample_rate)
    final_peak = now_peak if now_peak is not None else true_peak(out, sample_rate)
    level = Level(measured, _db(decoded_peak), before_dc, gain_db, limited_db, final_lufs, _db(final_peak))
    return out, level
