"""The package as a producer installs it: a wheel built from this checkout, installed into a fresh
virtual environment, runs `notono-live serve` from a folder outside the checkout with the shipped
model inside the wheel, and answers over a real UDP socket.

The virtual environment gets the test environment's site-packages (torch, librosa, ...) as plain
entries at the end of its path, so that the test needs no download of several hundred MB; their
.pth files (an editable install of this checkout among them) are not run, and notono-live itself
comes only from the wheel, which the test checks."""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

import pytest

from notono_live import shipped
from notono_live.daemon.process import DaemonProcess
from notono_live.osc.client import NotonoClient

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_in_the_wheel_list():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "notono_live").rglob("__init__.py")}
    assert found <= listed, f"pyproject.toml's packages lacks {sorted(found - listed)}"
    assert config["package-dir"] == {"notono_live.shipped_models": "models",
                                     "notono_live.shipped_device": "max_for_live"}
    data = config["package-data"]
    for name in shipped.MODEL_FILES:
        assert any(Path(name).match(pattern) for pattern in data["notono_live.shipped_models"]), name
    assert shipped.DEVICE_NAME in data["notono_live.shipped_device"]


def test_shipped_paths_follow_the_environment(tmp_path, monkeypatch):
    assert (shipped.models_folder() / "vqvae.safetensors").is_file()
    assert shipped.device_file().is_file()
    monkeypatch.setenv(shipped.MODELS_ENV, str(tmp_path / "elsewhere"))
    monkeypatch.setenv(shipped.DEVICE_ENV, str(tmp_path / "x.amxd"))
    assert shipped.models_folder() == tmp_path / "elsewhere"
    assert shipped.device_file() == tmp_path / "x.amxd"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh virtual environment with the wheel of this checkout installed."""
    work = tmp_path_factory.mktemp("package")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(work / "dist"),
                            str(ROOT)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = (work / "dist").glob("notono_live-*.whl")
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / ("python.exe" if os.name == "nt" else "python")
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (Path(site) / "test_environment.pth").write_text("\n".join(ours) + "\n", encoding="utf-8")
    done = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return env_dir, bin_dir, python


def test_wheel_carries_the_model_and_the_device(installed, tmp_path):
    env_dir, _, python = installed
    outside = tmp_path / "somewhere else"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in (shipped.MODELS_ENV, shipped.DEVICE_ENV, "PYTHONPATH")}
    probe = subprocess.run([str(python), "-c", "import notono_live, notono_live.shipped as s; "
                            "print(notono_live.__file__); print(s.models_folder()); print(s.device_file())"],
                           capture_output=True, text=True, cwd=outside, env=env, timeout=60)
    assert probe.returncode == 0, probe.stderr
    package, models, device = (Path(line) for line in probe.stdout.splitlines())
    for path in (package, models, device):
        assert path.resolve().is_relative_to(env_dir.resolve()), f"{path} does not come from the wheel"
    assert sorted(p.name for p in models.iterdir() if p.suffix in (".json", ".safetensors")) == sorted(
        shipped.MODEL_FILES)
    for name in shipped.MODEL_FILES:
        assert (models / name).read_bytes() == (ROOT / "models" / name).read_bytes(), name
    assert device.read_bytes() == (ROOT / "max_for_live" / shipped.DEVICE_NAME).read_bytes()


def test_installed_daemon_serves_the_shipped_model_from_any_folder(installed, tmp_path):
    _, bin_dir, _ = installed
    outside = tmp_path / "a folder outside the checkout"
    outside.mkdir()
    saved = {k: os.environ.pop(k) for k in (shipped.MODELS_ENV, "PYTHONPATH") if k in os.environ}
    try:
        daemon = DaemonProcess(tmp_path / "data", ["--threads", "1", "--candidates", "1"],
                               command=[str(bin_dir / "notono-live")], cwd=outside).start()
    finally:
        os.environ.update(saved)
    try:
        with NotonoClient(daemon.host, daemon.port, timeout=120) as client:
            hello = client.connect()
            assert hello.ok, hello.error
            reply = client.request("/notono/generate", 60, "organ", 1.0, 0.8, 1, 3)
            assert reply.ok, reply.error
            wav = Path(reply.sounds[0]["wav"])
            assert wav.is_file() and wav.resolve().is_relative_to((tmp_path / "data").resolve())
    finally:
        daemon.stop()
    assert any("ready" in line for line in daemon.stdout_lines)
