"""Split the daemon's one-cell inpaint (`bench`'s "inpaint 1 top cell") into its stages, in one process.

Usage (from the repository root, package importable):

    python benchmarks/inpaint_stages.py MODEL_FOLDER [--repeats 25] [--threads 2]

Builds the daemon's engine on MODEL_FOLDER with a session in a temporary folder, generates one
keyboard note at MIDI 60, then inpaints one top cell of it `--repeats` times (a different cell and
seed each time, as the bench does) and prints the median of each stage over the repeats after the
first three: the priors' sampling (`NotonoModel.inpaint`), the decode to 16 kHz audio, the levelling
(`levels.normalise`, at 44.1 kHz), the store's writes, the whole render's commit (levelling, the
spectrogram picture and the writes), and the whole call. No OSC: what the bench adds over this is
the daemon's sockets and queue. Untimed by the test suite; docs/performance.md quotes it.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Callable

import torch

from notono_live.engine import engine as engine_module
from notono_live.engine.engine import Engine
from notono_live.engine.store import SoundStore
from notono_live.models.bundle import NotonoModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.repeats < 4:
        parser.error("--repeats must be at least 4 (the first three warm up and are not counted)")
    torch.set_num_threads(args.threads)
    model = NotonoModel.load(args.model)
    with tempfile.TemporaryDirectory(prefix="notono-inpaint-stages-") as folder:
        measure(model, folder, args.repeats)


def measure(model: NotonoModel, folder: str, repeats: int) -> None:
    engine = Engine(model, SoundStore(f"{folder}/session"), f"{folder}/samples")
    sound = engine.generate(60, "keyboard", seed=1)[0].sound
    stages: dict[str, list[float]] = {}

    def timed(name: str, function: Callable) -> Callable:
        def run(*args, **kwargs):
            start = time.perf_counter()
            result = function(*args, **kwargs)
            stages.setdefault(name, []).append((time.perf_counter() - start) * 1000.0)
            return result
        return run

    # instance attributes shadow the methods for this engine only; the module's levelling is wrapped
    model.inpaint = timed("sampling", model.inpaint)
    model.decode = timed("decode", model.decode)
    engine.store.commit = timed("store writes", engine.store.commit)
    engine._commit = timed("commit (levels, picture, writes)", engine._commit)
    normalise = engine_module.levels.normalise
    engine_module.levels.normalise = timed("levels", normalise)
    try:
        for i in range(repeats):
            timed("whole inpaint", engine.inpaint_region)(sound, "top", i % 32, i % 4, 1, 1, seed=300 + i)
    finally:
        engine_module.levels.normalise = normalise
    print(f"one-cell inpaint, median of {repeats - 3} (ms)")
    for name, values in stages.items():
        print(f"  {name:34s} {statistics.median(values[3:]):7.1f}")


if __name__ == "__main__":
    main()
