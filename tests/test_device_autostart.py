"""The device starts its own daemon: finding none on its port, the device's Node for Max script
(max_for_live/notono_daemon.js) starts a real `notono-live serve`, the device connects, generates
into a clip and closes; the daemon then stops by itself. With a daemon already running, the device
reuses it, and three devices side by side each pick their own reply port and get only their own
replies. Node runs notono.js and notono_daemon.js wired as the patch wires them."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from notono_live.daemon.process import DaemonProcess
from test_device import NODE, NODE_DIR  # tests/ is on sys.path under pytest


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return "\nState:\tZ" not in state          # a zombie has exited


def _device_env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    # the notono-live of this environment, found on PATH as Live would find an installed one
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["NODE_PATH"] = str(NODE_DIR / "modules")
    env["XDG_DATA_HOME"] = str(tmp_path / "data")     # the started daemon's user data folder
    env.pop("PYTHONPATH", None)
    return env


def _run_device(port: int, tmp_path: Path) -> dict:
    done = subprocess.run([NODE, str(NODE_DIR / "e2e_autostart.js"), str(port), "150"], capture_output=True,
                          text=True, timeout=200, cwd=tmp_path, env=_device_env(tmp_path))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_device_starts_a_daemon_and_it_stops_after_the_device_closes(tmp_path):
    port = _free_udp_port()
    result = _run_device(port, tmp_path)
    assert result["ok"], (result.get("error"), result["statuses"][-8:], result["missing"])
    assert len(result["started"]) == 1, result
    pid = int(result["started"][0])
    statuses = result["statuses"]
    assert any(s.startswith(f"No daemon on 127.0.0.1:{port}: starting notono-live serve") for s in statuses)
    assert any(s.startswith("Daemon: notono-live ready in") for s in statuses), statuses
    assert any(s.startswith("Connected to notono-live") for s in statuses)
    (wav,) = result["creates"][0]
    assert Path(wav).is_file() and Path(wav).resolve().is_relative_to((tmp_path / "data").resolve())
    deadline = time.monotonic() + 60
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _alive(pid), "the daemon the device started still runs after the device closed"


def test_device_reuses_a_running_daemon(tmp_path):
    daemon = DaemonProcess(tmp_path / "own", ["--threads", "1", "--candidates", "1"]).start()
    try:
        result = _run_device(daemon.port, tmp_path)
        assert result["ok"], (result.get("error"), result["statuses"][-8:])
        assert result["started"] == [] and result["missing"] == []
        assert not any("starting notono-live serve" in s for s in result["statuses"])
        (wav,) = result["creates"][0]
        assert Path(wav).resolve().is_relative_to((tmp_path / "own").resolve())
        time.sleep(1)
        assert daemon.alive(), "a daemon the device did not start is left running"
    finally:
        daemon.stop()


def test_three_devices_pick_their_own_reply_ports_and_get_only_their_own_replies(tmp_path):
    daemon = DaemonProcess(tmp_path / "own", ["--threads", "1", "--candidates", "1"]).start()
    try:
        runs = [subprocess.Popen([NODE, str(NODE_DIR / "e2e_autostart.js"), str(daemon.port), "150", "--auto-reply"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                                 env=_device_env(tmp_path)) for _ in range(3)]
        results = []
        for run in runs:
            out, err = run.communicate(timeout=200)
            assert run.returncode == 0, err
            results.append(json.loads(out))
    finally:
        daemon.stop()
    for result in results:
        assert result["ok"], (result.get("error"), result["statuses"][-6:])
        assert result["started"] == [], "a device started a second daemon beside the running one"
    ports = [r["replyPort"] for r in results]
    assert len(set(ports)) == 3 and all(p > 0 for p in ports), ports
    # each device generated one sound and heard of that one only: replies went to the asker alone
    assert all(len(r["sounds"]) == 1 for r in results), [r["sounds"] for r in results]
    assert len({r["sounds"][0] for r in results}) == 3
