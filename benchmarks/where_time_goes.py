"""Split one default generation (`generate x1`) into its stages and its samplers into their kernels.

Usage (from the repository root, package importable): python benchmarks/where_time_goes.py MODEL_FOLDER [--runs 3] [--step-precision auto] [--sampling-threads 1] [--threads 2]

Does what `NotonoModel.generate_sounds` does for one sound picked on full decodes (`pick_on="full"`;
a model trained with bottom dropout picks on previews instead, `models/picking.py`), stage by stage,
with the model's candidates (4) under its default guidance: sample the top maps, sample the bottom maps, decode them
with the VQ-VAE, invert the Mel-IF images (with the Griffin-Lim pass), score them on pitch, then
what the daemon adds for the kept sound (resampling to 44.1 kHz, loudness, the PNG; and pYIN's check
for the `pitch_missed` notice, which the daemon runs after the reply). Prints the
median of `--runs` runs per stage, then one run of each sampler under `torch.profiler`, split into
linear layers, attention products and everything else.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.profiler import profile

from notono_live.engine import levels, pitching, render
from notono_live.models import sampling
from notono_live.models.bundle import NotonoModel, _to_maps
from notono_live.models.pitch_selection import best_on_pitch

LINEAR = ("aten::addmm", "aten::mm", "mkldnn::_linear_pointwise")
ATTENTION = ("aten::bmm", "aten::_scaled_dot_product_flash_attention_for_cpu")
STAGES = ("top sampling (128 tokens)", "bottom sampling (512 tokens)", "VQ-VAE decode", "Mel-IF inverse",
          "pitch scores", "pYIN check (after the reply)", "resample + loudness (kept sound)", "PNG (kept sound)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pitch", type=int, default=55)
    parser.add_argument("--family", default="keyboard")
    parser.add_argument("--step-precision", default="auto")
    parser.add_argument("--sampling-threads", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = NotonoModel.load(args.models)
    model.set_step_precision(args.step_precision)
    model.generate_sounds(args.pitch, args.family, seed=1000)   # warm-up
    rows = model.candidates
    pitch, family = model._labels(args.pitch, args.family, rows)
    options = model._options(1.0, 0, 0.8, None, model.default_guidance)
    every_top = torch.ones(128, dtype=torch.bool)
    every_bottom = torch.ones(512, dtype=torch.bool)

    def sample_top(generator):
        return sampling.sample_top_sequence(model.top_prior, torch.zeros(rows, 128, dtype=torch.long), every_top,
                                            pitch, family, options, generator)

    def sample_bottom(top, generator):
        return sampling.sample_bottom_sequence(model.bottom_prior, torch.zeros(rows, 512, dtype=torch.long), top,
                                               every_bottom, pitch, family, options, generator)

    times = []
    for seed in range(args.runs):
        generator = model._generator(seed)
        stamps = [time.perf_counter()]
        torch.set_num_threads(args.sampling_threads)
        with torch.inference_mode():
            top = sample_top(generator)
            stamps.append(time.perf_counter())
            bottom = sample_bottom(top, generator)
            stamps.append(time.perf_counter())
        torch.set_num_threads(args.threads)
        maps = _to_maps(sampling.sequence_to_grid("top", top), sampling.sequence_to_grid("bottom", bottom))
        images = model.decode_images(maps)
        stamps.append(time.perf_counter())
        with torch.inference_mode():
            audio = model.representation.inverse(images).float().numpy()
        stamps.append(time.perf_counter())
        best, _ = best_on_pitch(audio, args.pitch)
        stamps.append(time.perf_counter())
        pitching.pitch_miss(audio[best], args.pitch)
        stamps.append(time.perf_counter())
        levels.normalise(render.resample_for_output(audio[best], 44100, clip=False), 44100)
        stamps.append(time.perf_counter())
        render.spectrogram_png(audio[best])
        stamps.append(time.perf_counter())
        times.append(np.diff(stamps) * 1000)
    median = np.median(np.array(times), axis=0)
    print(f"{rows} candidates, guidance {options.guidance:g} ({rows * (2 if options.guided else 1)} rows per step), "
          f"step {model.top_prior.step_precision}, {args.sampling_threads} sampling thread(s); median of {args.runs}:")
    for name, ms in zip(STAGES, median):
        print(f"  {name:<36} {ms:7.0f} ms")
    check = STAGES.index("pYIN check (after the reply)")
    print(f"  {'total':<36} {median.sum():7.0f} ms")
    print(f"  {'until the reply (all but the check)':<36} {median.sum() - median[check]:7.0f} ms")

    torch.set_num_threads(args.sampling_threads)
    generator = model._generator(0)
    for name, run in (("top sampling", lambda: sample_top(generator)),
                      ("bottom sampling", lambda: sample_bottom(top, generator))):
        with torch.inference_mode(), profile() as prof:
            start = time.perf_counter()
            run()
            wall = (time.perf_counter() - start) * 1000
        self_ms = {e.key: e.self_cpu_time_total / 1000 for e in prof.key_averages()}
        linear = sum(self_ms.get(k, 0.0) for k in LINEAR)
        attention = sum(self_ms.get(k, 0.0) for k in ATTENTION)
        print(f"{name} under the profiler: {wall:.0f} ms = linear layers {linear:.0f} ms + attention products "
              f"{attention:.0f} ms + the rest {wall - linear - attention:.0f} ms")


if __name__ == "__main__":
    main()
