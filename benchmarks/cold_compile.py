"""How long requests wait while a daemon compiles its sampling step for the first time.

Usage (from the repository root, package importable):

    python benchmarks/cold_compile.py [--seconds 240] [--models MODEL_FOLDER]

Starts `notono-live serve --compile-step` on a fresh data folder, so its Inductor cache is empty
(unless TORCHINDUCTOR_CACHE_DIR names one), and asks for a new sound (one draw, defaults otherwise)
every second for `--seconds`, from the moment it is ready. Prints each request's time from the
start and its latency, the first request's latency (it also waits for the render tools' imports),
then the median and the longest latency of the others before and after the daemon said its
compiled step was ready, and the daemon's lines about compiling. Untimed by the test suite;
docs/performance.md quotes it.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from notono_live.daemon.cli import COMPILE_FAILED, COMPILE_READY
from notono_live.daemon.process import DaemonProcess
from notono_live.osc.client import NotonoClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--models", default=None)
    args = parser.parse_args()
    extra = ["--compile-step", "--candidates", "1"] + (["--models", args.models] if args.models else [])
    with tempfile.TemporaryDirectory(prefix="notono-cold-compile-") as folder:
        daemon = DaemonProcess(Path(folder) / "data", extra).start()
        started = time.monotonic()
        timings: list[tuple[float, float, bool]] = []   # (seconds since ready, latency ms, compiled yet)
        try:
            with NotonoClient(daemon.host, daemon.port, timeout=600.0) as client:
                client.connect()
                i = 0
                while time.monotonic() - started < args.seconds:
                    compiled = any(COMPILE_READY in line for line in daemon.stdout_lines)
                    reply = client.request("/notono/generate", 48 + i % 24, "keyboard", 1.0, 0.8, 1, 100 + i,
                                           timeout=600.0)
                    if not reply.ok:
                        raise SystemExit(f"request {i} failed: {reply.error}")
                    timings.append((time.monotonic() - started, reply.elapsed * 1000.0, compiled))
                    i += 1
                    time.sleep(1.0)
        finally:
            daemon.stop()
        lines = [line for line in daemon.stdout_lines if "compil" in line or COMPILE_FAILED in line
                 or "separate process" in line]
    print("  ".join(f"{t:.0f}s:{ms:.0f}" for t, ms, _ in timings))
    # the first request also waits for the render tools' imports (`warm_render_tools`): apart
    print(f"first request: {timings[0][1]:.0f} ms")
    for label, chosen in (("before the compiled step", [ms for _, ms, c in timings[1:] if not c]),
                          ("with the compiled step", [ms for _, ms, c in timings[1:] if c])):
        if chosen:
            print(f"{label}: {len(chosen)} requests, median {statistics.median(chosen):.0f} ms, "
                  f"longest {max(chosen):.0f} ms")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
