"""Audition: play a rendered sound on the daemon machine's audio output, through sounddevice.

sounddevice needs the PortAudio library and an output device; either may be missing (servers,
containers, a laptop with its audio off). Every such case raises `PreviewUnavailable` with a message
saying what is missing, so the daemon answers `/notono/preview` with an error and keeps running.
Playback does not block: a new preview cuts the one still sounding.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PORTAUDIO_HINT = ("install PortAudio (Debian/Ubuntu: `apt install libportaudio2`; the sounddevice "
                   "wheels for macOS and Windows include it)")
_lock = threading.Lock()   # sounddevice's play()/stop() share one global stream


class PreviewUnavailable(RuntimeError):
    """Audio preview cannot run here; the message says why (no PortAudio, no output device...)."""


@dataclass(frozen=True)
class PreviewResult:
    """What `play_file` started.

    Args:
        path: the file playing.
        duration_s: its length in seconds.
        sample_rate: the rate it plays at.
        device: the output device's name.
    """

    path: Path
    duration_s: float
    sample_rate: int
    device: str


def _sounddevice() -> Any:
    """The sounddevice module, or PreviewUnavailable when PortAudio cannot be loaded."""
    try:
        import sounddevice
    except OSError as error:       # sounddevice raises OSError when libportaudio is not found
        raise PreviewUnavailable(f"audio preview is unavailable: the PortAudio library could not be "
                                 f"loaded ({error}); {PORTAUDIO_HINT}") from None
    except ImportError as error:
        raise PreviewUnavailable(f"audio preview is unavailable: sounddevice is not installed ({error})") from None
    return sounddevice


def _output_device(sd: Any, device: int | str | None) -> dict:
    try:
        info = sd.query_devices(device, kind="output")
    except ValueError as error:    # no device matching the name or index
        raise PreviewUnavailable(f"audio preview is unavailable: no output device {device!r} ({error})") from None
    except sd.PortAudioError as error:
        what = "no default audio output device" if device is None else f"output device {device!r} failed"
        raise PreviewUnavailable(f"audio preview is unavailable: {what} ({error})") from None
    if not info or info.get("max_output_channels", 0) < 1:
        raise PreviewUnavailable(f"audio preview is unavailable: device {device!r} has no output channels")
    return info


def available(device: int | str | None = None) -> tuple[bool, str]:
    """(True, device name) when preview can play, else (False, why not)."""
    try:
        sd = _sounddevice()
        info = _output_device(sd, device)
    except PreviewUnavailable as error:
        return False, str(error)
    return True, str(info.get("name", "default output"))


def _read(path: Path) -> tuple[np.ndarray, int]:
    import soundfile
    if not path.is_file():
        raise FileNotFoundError(f"cannot preview {path}: no such file")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except RuntimeError as error:  # soundfile's LibsndfileError
        raise ValueError(f"cannot preview {path}: not a readable audio file ({error})") from None
    return data, int(rate)


def _fit_rate(sd: Any, data: np.ndarray, rate: int, device: int | str | None, info: dict) -> tuple[np.ndarray, int]:
    """Resample to the device's own rate when it refuses the file's (PortAudio does not resample)."""
    try:
        sd.check_output_settings(device=device, samplerate=rate, channels=data.shape[1])
        return data, rate
    except Exception:
        target = int(info.get("default_samplerate") or 48_000)
    if target == rate:
        return data, rate
    import librosa
    return librosa.resample(data.T, orig_sr=rate, target_sr=target).T.astype(np.float32), target


def play_file(path: str | Path, device: int | str | None = None, blocking: bool = False) -> PreviewResult:
    """Play an audio file on an output device (None: the system default), cutting any preview still
    playing.

    Raises FileNotFoundError / ValueError for a missing or unreadable file, and PreviewUnavailable
    when there is no PortAudio, no such output device, or playback fails to start.
    """
    path = Path(path)
    data, rate = _read(path)
    sd = _sounddevice()
    info = _output_device(sd, device)
    channels = int(info.get("max_output_channels", 1))
    if data.shape[1] > channels:       # a mono device gets the channels' mean
        data = data.mean(axis=1, keepdims=True)
    data, rate = _fit_rate(sd, data, rate, device, info)
    try:
        with _lock:
            sd.stop()
            sd.play(data, rate, device=device, blocking=False)
        if blocking:
            sd.wait()
    except sd.PortAudioError as error:
        raise PreviewUnavailable(f"audio preview failed on {info.get('name', 'the output')!r}: {error}") from None
    return PreviewResult(path, data.shape[0] / rate, rate, str(info.get("name", "default output")))


def stop() -> None:
    """Stop a preview that is playing; nothing happens where preview is unavailable."""
    try:
        sd = _sounddevice()
    except PreviewUnavailable:
        return
    with _lock:
        sd.stop()
