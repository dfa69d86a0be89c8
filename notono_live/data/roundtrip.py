"""Round trip with no model: corpus notes -> image -> audio, and how much survives.

This is the ceiling any model trained on the representation can reach. For N notes spread evenly
over the families it measures: the waveform SNR of the linear variant (exact up to the dropped
Nyquist bin, so it should exceed 40 dB), the spectral convergence and log-spectral distance of the
Mel-IF variant (plus its waveform SNR), and whether the pitch is kept: pYIN median f0 within 50
cents of the label, counted over the notes whose original already passes that test.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..audio_io import load_audio
from ..constants import FAMILIES, HOP_LENGTH, N_FFT, PHASE_THRESHOLD_LOG_POWER, SAMPLE_RATE, WIN_LENGTH
from .nsynth import NoteRecord, read_examples

__all__ = ["RoundTripResult", "select_spread", "spectral_distances", "waveform_snr_db", "run_roundtrip"]

LSD_POWER_FLOOR = 1e-8  # power floor of the log-spectral distance so silent bins do not dominate


def waveform_snr_db(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Per-row SNR (dB) of estimate against reference, arrays [N, samples]."""
    reference, estimate = np.atleast_2d(reference).astype(np.float64), np.atleast_2d(estimate).astype(np.float64)
    noise = np.sum((reference - estimate) ** 2, axis=1)
    return 10.0 * np.log10(np.sum(reference ** 2, axis=1) / np.maximum(noise, 1e-30))


def spectral_distances(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-note (log-spectral distance dB, spectral convergence) on the method's linear STFT.

    LSD: per frame sqrt(mean over bins of (10·log10 P/P̂)²), averaged over frames, with powers floored
    at 1e-8. SC: ‖|S| − |Ŝ|‖_F / ‖|S|‖_F.
    """
    def power(audio: np.ndarray) -> torch.Tensor:
        audio = torch.as_tensor(np.atleast_2d(audio), dtype=torch.float64)
        window = torch.hann_window(WIN_LENGTH, dtype=torch.float64)
        spec = torch.stft(audio, N_FFT, HOP_LENGTH, WIN_LENGTH, window, center=True, return_complex=True)
        return spec.abs().square()

    ref, est = power(reference), power(estimate)
    log_ratio = 10.0 * torch.log10((ref + LSD_POWER_FLOOR) / (est + LSD_POWER_FLOOR))
    lsd = log_ratio.square().mean(dim=1).sqrt().mean(dim=1)
    sc = (ref.sqrt() - est.sqrt()).flatten(1).norm(dim=1) / ref.sqrt().flatten(1).norm(dim=1).clamp_min(1e-12)
    return lsd.numpy(), sc.numpy()


def select_spread(records: list[NoteRecord], n: int, seed: int = 0) -> list[NoteRecord]:
    """Up to n notes spread over the families: round-robin over families, seeded order inside each."""
    by_family: dict[str, list[NoteRecord]] = {}
    for record in sorted(records, key=lambda r: r.note):
        by_family.setdefault(record.family, []).append(record)
    rng = np.random.default_rng(seed)
    queues = {family: [notes[i] for i in rng.permutation(len(notes))]
              for family, notes in sorted(by_family.items(), key=lambda kv: FAMILIES.index(kv[0]))}
    chosen: list[NoteRecord] = []
    while len(chosen) < n and any(queues.values()):
        for queue in queues.values():
            if queue and len(chosen) < n:
                chosen.append(queue.pop(0))
    return chosen


@dataclass
class RoundTripResult:
    """Figures of one round trip run (means over the notes unless named otherwise)."""

    notes: int
    families: dict[str, int]
    break_frequency_hz: float
    linear_snr_db_mean: float
    linear_snr_db_min: float
    mel_snr_db_mean: float
    mel_spectral_convergence: float
    mel_log_spectral_distance_db: float
    linear_log_spectral_distance_db: float
    pitch_checked: int | None = None         # originals that pass the pitch test
    pitch_kept: int | None = None            # of those, Mel-IF round trips that still pass
    pitch_failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def pitch_kept_fraction(self) -> float:
        return float("nan") if not self.pitch_checked else self.pitch_kept / self.pitch_checked

    def summary(self) -> str:
        lines = [
            f"round trip of {self.notes} notes ({', '.join(f'{k} {v}' for k, v in self.families.items())}):",
            f"  linear IF : SNR {self.linear_snr_db_mean:.1f} dB mean, {self.linear_snr_db_min:.1f} dB min; "
            f"LSD {self.linear_log_spectral_distance_db:.3f} dB",
            f"  Mel-IF fb={self.break_frequency_hz:g} Hz: spectral convergence {self.mel_spectral_convergence:.4f}, "
            f"log-spectral distance {self.mel_log_spectral_distance_db:.3f} dB, waveform SNR {self.mel_snr_db_mean:.1f} dB",
        ]
        if self.pitch_checked is not None:
            lines.append(f"  pitch kept (pYIN median f0 within 50 cents): {self.pitch_kept}/{self.pitch_checked} "
                         f"= {100 * self.pitch_kept_fraction:.1f}% of the notes whose original passes "
                         f"({self.notes - self.pitch_checked} originals fail the test themselves)")
            if self.pitch_failures:
                lines.append(f"  pitch lost on: {', '.join(self.pitch_failures)}")
        lines.append(f"  in {self.seconds:.1f} s")
        return "\n".join(lines)


def run_roundtrip(corpus: str | os.PathLike, n: int = 100, seed: int = 0, break_frequency_hz: float = 240.0,
                  phase_threshold: float | None = PHASE_THRESHOLD_LOG_POWER, check_pitch: bool = True,
                  batch_size: int = 8, progress: bool = True) -> RoundTripResult:
    """Send n corpus notes through LinearIF and MelIF and back; return the figures."""
    import time

    from tqdm import tqdm

    from ..representation import LinearIF, MelIF

    started = time.perf_counter()
    if n < 1:
        raise ValueError(f"the number of notes must be at least 1, got {n}")
    chosen = select_spread(read_examples(Path(corpus)), n, seed)
    if not chosen:
        raise ValueError(f"{corpus} holds no notes in the pitch range and families kept")
    linear, mel = LinearIF(), MelIF(break_frequency_hz, phase_threshold=phase_threshold)
    if check_pitch:
        from ..evaluation.pitch import pitch_within_cents
    linear_snr, linear_lsd, mel_snr, mel_lsd, mel_sc = [], [], [], [], []
    checked = kept = 0
    failures: list[str] = []
    for start in tqdm(range(0, len(chosen), batch_size), desc="round trip", unit="batch", disable=not progress):
        batch = chosen[start:start + batch_size]
        audio = np.stack([load_audio(r.path) for r in batch])
        tensor = torch.from_numpy(audio)
        linear_out = linear.inverse(linear(tensor)).numpy()
        mel_out = mel.inverse(mel(tensor)).numpy()
        linear_snr += waveform_snr_db(audio, linear_out).tolist()
        linear_lsd += spectral_distances(audio, linear_out)[0].tolist()
        mel_snr += waveform_snr_db(audio, mel_out).tolist()
        lsd, sc = spectral_distances(audio, mel_out)
        mel_lsd += lsd.tolist()
        mel_sc += sc.tolist()
        if check_pitch:
            for record, original, restored in zip(batch, audio, mel_out):
                if pitch_within_cents(original, SAMPLE_RATE, record.pitch):
                    checked += 1
                    if pitch_within_cents(restored, SAMPLE_RATE, record.pitch):
                        kept += 1
                    else:
                        failures.append(record.note)
    families: dict[str, int] = {}
    for record in chosen:
        families[record.family] = families.get(record.family, 0) + 1
    return RoundTripResult(
        notes=len(chosen), families=families, break_frequency_hz=break_frequency_hz,
        linear_snr_db_mean=float(np.mean(linear_snr)), linear_snr_db_min=float(np.min(linear_snr)),
        mel_snr_db_mean=float(np.mean(mel_snr)), mel_spectral_convergence=float(np.mean(mel_sc)),
        mel_log_spectral_distance_db=float(np.mean(mel_lsd)),
        linear_log_spectral_distance_db=float(np.mean(linear_lsd)),
        pitch_checked=checked if check_pitch else None, pitch_kept=kept if check_pitch else None,
        pitch_failures=failures, seconds=time.perf_counter() - started)
