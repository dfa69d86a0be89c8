"""Starting `notono-live serve` as a child process and watching it: what bench and the tests use.

A real daemon in a real process, talking real UDP: the child runs ``python -m notono_live serve`` on
a free port (``--port 0``), and the parent reads the port from its "ready" line.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

_READY = re.compile(r"notono-live ready in ([\d.]+) s: OSC on udp ([^ ]+):(\d+);")
REPO_ROOT = Path(__file__).resolve().parents[2]


class DaemonProcess:
    """A `notono-live serve` child process.

    Args:
        data_dir: session root (``--data-dir``).
        extra_args: more `serve` options (``--models``, ``--queue-size``, ...).
        log_path: where the child's stderr goes (default: data_dir/daemon.log).
        ready_timeout: seconds to wait for the ready line.
        midi: open MIDI input as `serve` does by default; False (the default here) passes
            ``--no-midi``, so tests and bench never touch the machine's MIDI system.
        command: the `notono-live` to run, e.g. an installed entry point; None runs this checkout's
            package (``python -m notono_live`` from the repository, with it on PYTHONPATH).
        cwd: the folder it runs in (default: the repository, or the current folder with `command`).
    """

    def __init__(self, data_dir: str | Path, extra_args: Sequence[str] = (), log_path: str | Path | None = None,
                 ready_timeout: float = 120.0, midi: bool = False, command: Sequence[str] | None = None,
                 cwd: str | Path | None = None) -> None:
        self.command = list(command) if command is not None else None
        self.cwd = Path(cwd) if cwd is not None else (None if command is not None else REPO_ROOT)
        self.data_dir = Path(data_dir)
        self.extra_args = list(extra_args)
        self.log_path = Path(log_path) if log_path else self.data_dir / "daemon.log"
        self.ready_timeout = ready_timeout
        self.midi = midi
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.host = "127.0.0.1"
        self.ready_seconds: float | None = None    # as the daemon measured it (after imports)
        self.wall_to_ready: float | None = None    # from spawn to the ready line, as a user waits
        self.stdout_lines: list[str] = []

    def start(self) -> "DaemonProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        program = self.command if self.command is not None else [sys.executable, "-m", "notono_live"]
        args = [*program, "serve", "--port", "0", "--data-dir", str(self.data_dir),
                *([] if self.midi else ["--no-midi"]), *self.extra_args]
        env = dict(os.environ)
        if self.command is None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env.setdefault("PYTHONUNBUFFERED", "1")
        started = time.perf_counter()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._log, text=True, env=env,
                                     cwd=None if self.cwd is None else str(self.cwd))
        ready = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.stdout_lines.append(line.rstrip("\n"))
                match = _READY.search(line)
                if match and not ready.is_set():
                    self.ready_seconds = float(match.group(1))
                    self.host, self.port = match.group(2), int(match.group(3))
                    self.wall_to_ready = time.perf_counter() - started
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + self.ready_timeout
        while not ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the daemon did not become ready (exit code {self.proc.returncode}); "
                                   f"log:\n{self.log_text()[-3000:]}")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def memory(self) -> tuple[int, int] | None:
        """(current RSS, peak RSS) in bytes, from /proc (Linux); None elsewhere."""
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        values = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.M))
        return int(values["VmRSS"]) * 1024, int(values["VmHWM"]) * 1024

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait (the clean shutdown path); SIGKILL if it hangs."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: no chance to clean up (the crash test)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()

    def _close(self) -> None:
        log = getattr(self, "_log", None)
        if log is not None and not log.closed:
            log.close()

    def __enter__(self) -> "DaemonProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
