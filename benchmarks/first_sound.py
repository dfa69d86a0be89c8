"""Time from starting the daemon to its first sound: ready, then a generation asked for at once.

Usage (from the repository root, package importable): python benchmarks/first_sound.py [--requests 7] [serve options ...]

Starts `notono-live serve` (as `notono-live bench` does), sends `/notono/generate` over OSC as soon as
it says ready, then again `--requests - 1` times, and prints the seconds to ready and each request's
latency. The first request shares the CPU with what the daemon warms after ready
(`daemon.cli.warm_render_tools`); the later ones show the steady state.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from notono_live.daemon.process import DaemonProcess
from notono_live.osc.client import NotonoClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=7)
    args, serve = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="notono-first-sound-") as tmp:
        daemon = DaemonProcess(Path(tmp), ["--device", "cpu", *serve])
        daemon.start()
        try:
            with NotonoClient(daemon.host, daemon.port, timeout=600.0) as client:
                client.connect()
                latencies = []
                for i in range(args.requests):
                    reply = client.request("/notono/generate", 55, "keyboard", 1.0, 0.8, 1, 100 + i, 0, -1.0,
                                           timeout=600.0)
                    if not reply.ok:
                        raise SystemExit(f"generate failed: {reply.error}")
                    latencies.append(reply.elapsed * 1000.0)
        finally:
            daemon.stop()
    print(f"ready {daemon.wall_to_ready:.2f} s after spawn; generate x1 at once {latencies[0]:.0f} ms, "
          f"then {', '.join(f'{t:.0f}' for t in latencies[1:])} ms")


if __name__ == "__main__":
    main()
