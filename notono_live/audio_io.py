"""Reading any audio file as a model-ready note, and writing WAV files atomically.

Everything the model sees is 16 kHz mono, exactly 4 s (64000 samples). `load_audio` brings any file
that libsndfile can read to that form: channels are averaged, another sample rate is resampled
(soxr, high quality) with a warning that names the file, and the result is zero-padded or trimmed to
4 s. `write_wav_atomic` writes through a temporary file in the destination folder and renames it,
so a crash never leaves a truncated WAV under the final name.
"""
from __future__ import annotations

import io
import math
import os
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from .constants import NUM_SAMPLES, SAMPLE_RATE
from .fileio import atomic_write_bytes

__all__ = ["load_audio", "fit_length", "write_wav_atomic", "ResampledAudioWarning"]


class ResampledAudioWarning(UserWarning):
    """A file was not at the model's sample rate and was resampled on reading."""


def fit_length(audio: np.ndarray, num_samples: int = NUM_SAMPLES) -> np.ndarray:
    """Zero-pad or trim a mono signal to ``num_samples``."""
    if audio.shape[0] >= num_samples:
        return audio[:num_samples]
    return np.pad(audio, (0, num_samples - audio.shape[0]))


def _frames_to_read(num_samples: int, file_rate: int, sample_rate: int) -> int:
    """Input frames needed for ``num_samples`` output samples, plus 0.1 s so the resampler's filter
    sees real signal (not the cut) around the last kept sample."""
    if file_rate == sample_rate:
        return num_samples
    return math.ceil(num_samples * file_rate / sample_rate) + file_rate // 10


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE,
               num_samples: int | None = NUM_SAMPLES) -> np.ndarray:
    """Read an audio file as float32 mono at ``sample_rate``, padded/trimmed to ``num_samples``.

    Args:
        path: any file libsndfile reads (WAV, FLAC, OGG, AIFF, MP3 with libsndfile ≥ 1.1).
        sample_rate: target rate; files at another rate are resampled with a `ResampledAudioWarning`
            naming the file.
        num_samples: output length (4 s at 16 kHz by default); None keeps the file's length.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not readable audio, or holds no samples.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        with sf.SoundFile(str(path)) as handle:
            file_rate = handle.samplerate
            # Read only what the output needs, so a long dropped file costs 4 s of memory, not hours.
            frames = -1 if num_samples is None else _frames_to_read(num_samples, file_rate, sample_rate)
            data = handle.read(frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise ValueError(f"cannot read {path} as audio: {error}") from None
    if data.shape[0] == 0:
        raise ValueError(f"audio file {path} holds no samples")
    audio = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if file_rate != sample_rate:
        import soxr  # pulled in by librosa; imported here to keep the module light
        warnings.warn(f"{path} is at {file_rate} Hz; resampling to {sample_rate} Hz",
                      ResampledAudioWarning, stacklevel=2)
        audio = soxr.resample(audio, file_rate, sample_rate, quality="HQ").astype(np.float32)
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    return fit_length(audio, num_samples) if num_samples is not None else audio


def write_wav_atomic(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE,
                     subtype: str = "PCM_16") -> Path:
    """Write ``audio`` (float in [-1, 1] or int16) as a WAV at ``path`` via temp file + os.replace.

    Float input is clipped to [-1, 1]; for PCM_16 it is rounded to int16 here (not by libsndfile)
    so the bytes are identical on every platform.
    """
    path = Path(path)
    audio = np.asarray(audio)
    if audio.ndim not in (1, 2):
        raise ValueError(f"audio for {path} must be 1-D (mono) or 2-D [samples, channels], got shape {audio.shape}")
    if subtype == "PCM_16" and audio.dtype != np.int16:
        audio = np.round(np.clip(audio.astype(np.float64), -1.0, 1.0) * 32767.0).astype(np.int16)
    buffer = io.BytesIO()   # rendered in memory (a 4 s note is ~128 kB), so a bad subtype writes nothing
    sf.write(buffer, audio, sample_rate, subtype=subtype, format="WAV")
    return atomic_write_bytes(path, buffer.getvalue())
