"""Time the levelling of rendered WAVs (`engine.levels.normalise`) on corpus notes.

Usage (from the repository root, package importable):

    python benchmarks/levelling.py CORPUS [--notes 20] [--repeats 3] [--rate 44100]

Takes `--notes` WAVs spread over CORPUS/audio (an NSynth-layout corpus, e.g. one `notono-live
render-corpus` wrote), resampled to `--rate` as the daemon's output is, levels each `--repeats`
times and prints the median time per note, apart for the notes the peak limiter had to act on
(percussive sounds: their peak-to-loudness ratio is over 19 dB) and the others, with the outcome:
loudness and true peak of the WAVs, and the deepest limiting. Untimed by the test suite;
docs/performance.md quotes it.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from notono_live.audio_io import load_audio
from notono_live.engine import levels, render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--notes", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate", type=int, default=44_100)
    args = parser.parse_args()
    files = sorted((args.corpus / "audio").glob("*.wav"))
    if not files:
        raise SystemExit(f"no WAVs in {args.corpus / 'audio'}")
    chosen = files[:: max(1, len(files) // args.notes)][: args.notes]
    sounds = [render.resample_for_output(load_audio(path), args.rate, clip=False) for path in chosen]
    levels.normalise(sounds[0], args.rate)   # imports and first calls
    times: list[list[float]] = [[] for _ in sounds]
    outcome = []
    for _ in range(args.repeats):
        outcome = []
        for index, sound in enumerate(sounds):
            start = time.perf_counter()
            _, level = levels.normalise(sound, args.rate)
            times[index].append((time.perf_counter() - start) * 1000.0)
            outcome.append(level)
    for name, limited in (("not limited", False), ("limited", True)):
        picked = [i for i, level in enumerate(outcome) if (level.limited_db > 0) == limited]
        if not picked:
            print(f"{name}: none of {len(sounds)} notes")
            continue
        medians = [statistics.median(times[i]) for i in picked]
        lufs = [outcome[i].final_lufs for i in picked if outcome[i].final_lufs is not None]
        print(f"{name}: {len(picked)} notes, median {statistics.median(medians):.1f} ms, max "
              f"{max(medians):.1f} ms; WAVs at {min(lufs):.2f} to {max(lufs):.2f} LUFS, true peak at most "
              f"{max(outcome[i].final_true_peak_dbtp for i in picked):.2f} dBTP"
              + (f", limited by up to {max(outcome[i].limited_db for i in picked):.1f} dB" if limited else ""))


if __name__ == "__main__":
    main()
