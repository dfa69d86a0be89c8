"""`notono-live bench`: start a real daemon, drive it over OSC on loopback, and print latencies.

Figures are measured the way the device feels them: from sending a request to receiving its final
reply, WAV and PNG written, each request sent once the daemon is idle (nothing queued or running,
the pitch check that follows a generated sound's reply included). For each operation it prints p50/p95 over `--repeats` runs and the time
the operation's matrix products alone take, measured in the bench's own process with the daemon's
model settings (`bench_bound`), with the ratio of the p50 to it; then cold start to ready, peak RSS,
and the same daemon with the reference-style sampler (whole sequence re-run per token, no KV cache)
for the cached/reference ratio. The targets, for the 2-core development CPU, are printed beside the
figures; bench reports, it does not fail. docs/performance.md explains the figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .bench_bound import MatrixTime
from .constants import STEP_PRECISIONS

# operation -> p50 target in ms on the 2-core development CPU (None: no target)
TARGETS_MS: dict[str, float | None] = {
    "generate x1": 500.0, "generate x4": 1500.0, "inpaint 1 top cell": 60.0, "regenerate first 2 s": None,
    "regenerate lowest quarter": None, "keep top, new bottom": 400.0, "encode": 100.0,
}
READY_TARGET_S = 3.0
RSS_TARGET_BYTES = 2**30


@dataclass
class OperationTiming:
    """Latencies of one operation.

    Args:
        name: operation.
        samples_ms: every run, in ms.
        errors: error replies seen (should be empty).
    """

    name: str
    samples_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return float(np.percentile(self.samples_ms, 50)) if self.samples_ms else float("nan")

    @property
    def p95(self) -> float:
        return float(np.percentile(self.samples_ms, 95)) if self.samples_ms else float("nan")


@dataclass
class BenchResult:
    """Everything bench measured."""

    device: str = ""
    model: str = ""
    wall_to_ready_s: float = float("nan")
    daemon_ready_s: float = float("nan")
    peak_rss_bytes: int = 0
    guidance: float = -1.0            # what the sampling requests sent (-1: the daemon's default)
    candidates: int | None = None     # serve --candidates (None: the daemon's default)
    pick_on: str | None = None        # serve --pick-on (None: the model's)
    operations: list[OperationTiming] = field(default_factory=list)
    reference: list[OperationTiming] = field(default_factory=list)
    matrix: list[MatrixTime] = field(default_factory=list)   # each operation's matrix work (bench_bound)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        for key in ("operations", "reference"):
            for entry, timing in zip(doc[key], getattr(self, key)):
                entry["p50_ms"], entry["p95_ms"] = timing.p50, timing.p95
        return doc


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="measure the daemon's latencies over real OSC",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help="model folder (default: the shipped models/)")
    parser.add_argument("--untrained", choices=["lite", "small"], help=argparse.SUPPRESS)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--repeats", type=int, default=10, help="runs per operation (default 10)")
    parser.add_argument("--reference-repeats", type=int, default=2,
                        help="runs per operation with the reference sampler (default 2; 0 skips it)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads in the daemon")
    parser.add_argument("--sampling-threads", dest="sampling_threads", type=int, default=None,
                        help="torch CPU threads while sampling (serve's option; default: the daemon's, 1)")
    parser.add_argument("--step-precision", dest="step_precision", choices=STEP_PRECISIONS,
                        default="auto", help="weights of the one-token sampling step (serve's option)")
    parser.add_argument("--guidance", type=float, default=-1.0,
                        help="guidance scale of the sampling requests (default -1: the daemon's default)")
    parser.add_argument("--candidates", type=int, default=None,
                        help="draws per generated sound (serve's option; default: the daemon's, 4)")
    parser.add_argument("--pick-on", dest="pick_on", choices=("full", "previews"), default=None,
                        help="serve's --pick-on (default: the model's)")
    parser.add_argument("--compile-step", dest="compile_step", action="store_true", default=None,
                        help="serve's --compile-step (default: serve's own choice); whenever the daemon "
                             "compiles, the runs start once the compiled step is ready")
    parser.add_argument("--no-compile-step", dest="compile_step", action="store_false", default=None,
                        help="serve's --no-compile-step")
    parser.add_argument("--no-bound", dest="bound", action="store_false",
                        help="skip the in-process run that measures each operation's matrix work")
    parser.add_argument("--operations", nargs="+", type=_operation_name, default=None, metavar="NAME",
                        help="only these operations, each one argument (default: all: "
                             + "; ".join(TARGETS_MS) + ")")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.set_defaults(func=run)


def _serve_args(args: argparse.Namespace) -> list[str]:
    out = ["--device", args.device]
    if args.models:
        out += ["--models", args.models]
    if args.untrained:
        out += ["--untrained", args.untrained]
    if args.threads:
        out += ["--threads", str(args.threads)]
    if args.step_precision != "auto":
        out += ["--step-precision", args.step_precision]
    if args.sampling_threads is not None:
        out += ["--sampling-threads", str(args.sampling_threads)]
    if args.candidates is not None:
        out += ["--candidates", str(args.candidates)]
    if getattr(args, "pick_on", None) is not None:
        out += ["--pick-on", args.pick_on]
    if getattr(args, "compile_step", None) is not None:
        out += ["--compile-step" if args.compile_step else "--no-compile-step"]
    return out


def _wait_for_compiled_step(daemon: Any, timeout: float = 900.0) -> str:
    """The daemon's line saying whether its compiled step is ready (`serve --compile-step`)."""
    from .daemon.cli import COMPILE_FAILED, COMPILE_READY

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(daemon.stdout_lines):
            if COMPILE_READY in line or COMPILE_FAILED in line:
                return line
        time.sleep(0.2)
    raise SystemExit(f"the daemon said nothing of its compiled step in {timeout:.0f} s")


def _operation_name(text: str) -> str:
    if text not in TARGETS_MS:
        raise argparse.ArgumentTypeError(f"unknown operation {text!r}; expected one of: "
                                         + "; ".join(repr(n) for n in TARGETS_MS))
    return text


def _settle(client: Any, timeout: float = 60.0) -> None:
    """Wait until the daemon is idle: nothing queued, no render running, and no pitch check left
    from the previous request (which runs after its reply), so each timing is one request's own."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pong = client.request("/notono/ping", timeout=10.0)
        if pong.ok and pong.final[1][1:3] == [0, 0]:
            return
        time.sleep(0.01)


def _measure(client: Any, name: str, repeats: int, send: Callable[[int], tuple]) -> OperationTiming:
    timing = OperationTiming(name)
    for i in range(repeats):
        address, *values = send(i)
        _settle(client)
        reply = client.request(address, *values, timeout=600.0)
        if reply.ok:
            timing.samples_ms.append(reply.elapsed * 1000.0)
        else:
            timing.errors.append(f"{reply.error}")
    return timing


def measure_operations(client: Any, repeats: int, names: list[str] | None = None,
                       source_wav: str | None = None, guidance: float = -1.0) -> tuple[list[OperationTiming], str]:
    """Time every benchmarked operation against a connected daemon; also returns the WAV the edits
    started from (a generated sound, or `source_wav` encoded). `guidance` goes with every sampling
    request (-1: the daemon's default)."""
    g = float(guidance)
    if source_wav is None:
        first = client.request("/notono/generate", 60, "keyboard", 1.0, 0.8, 1, 1, timeout=600.0)
    else:
        first = client.request("/notono/encode", source_wav, 60, "keyboard", timeout=600.0)
    if not first.ok:
        raise RuntimeError(f"could not make a sound to edit: {first.error}")
    sound, wav = first.sounds[0]["sound"], first.sounds[0]["wav"]
    plans: dict[str, Callable[[int], tuple]] = {
        "generate x1": lambda i: ("/notono/generate", 48 + i % 24, "keyboard", 1.0, 0.8, 1, 100 + i, 0, g),
        "generate x4": lambda i: ("/notono/generate", 48 + i % 24, "organ", 1.0, 0.8, 4, 200 + i, 0, g),
        "inpaint 1 top cell": lambda i: ("/notono/inpaint/region", sound, "top", i % 32, i % 4, 1, 1, -1, "",
                                         1.0, 0.8, 300 + i, g),
        "regenerate first 2 s": lambda i: ("/notono/inpaint/region", sound, "top", 0, 0, 32, 2, -1, "", 1.0, 0.8,
                                           400 + i, g),
        "regenerate lowest quarter": lambda i: ("/notono/inpaint/region", sound, "top", 0, 0, 8, 4, -1, "", 1.0,
                                                0.8, 500 + i, g),
        "keep top, new bottom": lambda i: ("/notono/bottom/regenerate", sound, -1, "", 1.0, 0.8, 600 + i, g),
        "encode": lambda i: ("/notono/encode", wav, 60, "keyboard"),
    }
    return [_measure(client, name, repeats, plans[name]) for name in (names or list(plans))], wav


def _table(timings: list[OperationTiming], title: str, matrix: list[MatrixTime] | None = None) -> str:
    bounds = {m.name: m.matrix_ms for m in matrix or []}
    lines = [title, f"  {'operation':<28} {'p50 ms':>9} {'p95 ms':>9} {'target':>9} {'matrix ms':>10} "
                    f"{'p50/matrix':>10}  runs"]
    for t in timings:
        target = TARGETS_MS.get(t.name)
        mark = "" if target is None else ("  ok" if t.p50 <= target else "  MISSED")
        target_text = "-" if target is None else f"<={target:.0f}"
        bound = bounds.get(t.name)
        bound_text = f"{bound:>10.1f} {t.p50 / bound:>9.1f}x" if bound else f"{'-':>10} {'-':>10}"
        lines.append(f"  {t.name:<28} {t.p50:>9.1f} {t.p95:>9.1f} {target_text:>9} {bound_text}  "
                     f"{len(t.samples_ms)}{mark}{'  errors: ' + '; '.join(t.errors[:2]) if t.errors else ''}")
    return "\n".join(lines)


def _matrix_times(args: argparse.Namespace) -> list[MatrixTime]:
    """Each operation's matrix work, run in this process with the daemon's model settings
    (`bench_bound`): the same folder, device, threads and step precision."""
    import torch

    from .bench_bound import measure_matrix_times
    from .daemon.cli import DEFAULTS, load_model, pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = {**DEFAULTS, "models": args.models, "untrained": args.untrained, "step_precision": args.step_precision,
                "pick_on": getattr(args, "pick_on", None)}
    if args.sampling_threads is not None:
        settings["sampling_threads"] = args.sampling_threads
    model = load_model(settings, pick_device(args.device))
    if args.candidates is not None:
        model.candidates = args.candidates
    with torch.inference_mode():
        source = model.generate_sounds(60, "keyboard", n=1, seed=1).audio[0]
    return measure_matrix_times(model, args.guidance, source, args.operations)


def run(args: argparse.Namespace) -> int:
    from .daemon.cli import COMPILE_STARTED
    from .daemon.process import DaemonProcess
    from .osc.client import NotonoClient

    result = BenchResult(guidance=args.guidance, candidates=args.candidates, pick_on=args.pick_on)
    with tempfile.TemporaryDirectory(prefix="notono-bench-") as tmp:
        daemon = DaemonProcess(Path(tmp) / "cached", _serve_args(args))
        print("starting the daemon ...", flush=True)
        daemon.start()
        try:
            result.wall_to_ready_s = daemon.wall_to_ready or float("nan")
            result.daemon_ready_s = daemon.ready_seconds or float("nan")
            with NotonoClient(daemon.host, daemon.port, timeout=600.0) as client:
                hello = client.connect()
                _, _, result.model, result.device, *_ = hello.final[1]
                if any(COMPILE_STARTED in line for line in list(daemon.stdout_lines)):
                    print("waiting for the compiled sampling step ...", flush=True)
                    print(_wait_for_compiled_step(daemon), flush=True)
                print(f"model {result.model} on {result.device}; step weights {args.step_precision}; "
                      f"sampling threads {args.sampling_threads or 'the daemon default'}; "
                      f"guidance {'daemon default' if args.guidance == -1 else args.guidance}; "
                      f"{'the daemon default number of' if args.candidates is None else args.candidates} "
                      f"draw(s) per generated sound"
                      f"{'' if args.pick_on is None else ', picked on ' + args.pick_on}; "
                      f"{args.repeats} runs per operation", flush=True)
                result.operations, source_wav = measure_operations(client, args.repeats, args.operations,
                                                                   guidance=args.guidance)
            memory = daemon.memory()
            result.peak_rss_bytes = memory[1] if memory else 0
        finally:
            daemon.stop()
        if args.bound:
            print("measuring each operation's matrix work in this process ...", flush=True)
            result.matrix = _matrix_times(args)
        reference_names = [n for n in ("generate x1", "inpaint 1 top cell") if n in (args.operations or TARGETS_MS)]
        if args.reference_repeats > 0 and reference_names:
            print("starting the daemon with the reference sampler (no KV cache) ...", flush=True)
            reference = DaemonProcess(Path(tmp) / "reference", _serve_args(args) + ["--reference-sampler"])
            reference.start()
            try:
                with NotonoClient(reference.host, reference.port, timeout=3600.0) as client:
                    client.connect()
                    result.reference, _ = measure_operations(client, args.reference_repeats,
                                                             reference_names, source_wav,
                                                             args.guidance)
            finally:
                reference.stop()

    print()
    print(_table(result.operations, "cached sampler (the daemon's own); matrix ms: its matrix products alone "
                                    "(bench_bound)", result.matrix))
    ready_mark = "ok" if result.wall_to_ready_s <= READY_TARGET_S else "MISSED"
    print(f"  cold start to ready: {result.wall_to_ready_s:.1f} s from spawn ({result.daemon_ready_s:.1f} s after "
          f"imports), target <= {READY_TARGET_S:.0f} s: {ready_mark}")
    if result.peak_rss_bytes:
        rss_mark = "ok" if result.peak_rss_bytes <= RSS_TARGET_BYTES else "MISSED"
        print(f"  peak RSS: {result.peak_rss_bytes / 2**20:.0f} MiB, target <= {RSS_TARGET_BYTES / 2**20:.0f} MiB: "
              f"{rss_mark}")
    if result.reference:
        print()
        print(_table(result.reference, "reference-style sampler (no KV cache, whole sequence per token)"))
        cached = {t.name: t for t in result.operations}
        for t in result.reference:
            if t.samples_ms and cached[t.name].samples_ms:
                print(f"  {t.name}: reference / cached p50 = {t.p50 / cached[t.name].p50:.1f}x")
    if args.json:
        args.json.write_text(json.dumps(result.to_dict(), indent=1))
    return 0


if __name__ == "__main__":   # `python -m notono_live.bench`, same options as `notono-live bench`
    _parser = argparse.ArgumentParser(prog="python -m notono_live.bench")
    register(_parser.add_subparsers(dest="command", required=True))
    sys.exit(run(_parser.parse_args(["bench", *sys.argv[1:]])))
