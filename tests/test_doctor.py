"""`notono-live doctor`, run as a user runs it: a real subprocess, real files, real UDP sockets and,
once, a real daemon on a port. Each failing check it knows is provoked for real and its line read."""
from __future__ import annotations

import ctypes.util
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from notono_live import __version__, doctor, shipped
from notono_live.daemon.cli import pick_device
from notono_live.daemon.process import DaemonProcess
from notono_live.models.compiled_step import COMPILERS
from notono_live.osc.client import NotonoClient

ROOT = Path(__file__).resolve().parents[1]
NO_ALSA_SEQUENCER = sys.platform.startswith("linux") and not os.path.exists("/dev/snd/seq")
NO_PORTAUDIO = ctypes.util.find_library("portaudio") is None


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (shipped.MODELS_ENV, shipped.DEVICE_ENV)}
    env.update(extra)
    return env


def run_doctor(*args: str, env: dict[str, str] | None = None) -> tuple[int, list[str], str]:
    done = subprocess.run([sys.executable, "-m", "notono_live", "doctor", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=_env() if env is None else env)
    return done.returncode, done.stdout.splitlines(), done.stdout + done.stderr


def lines_of(lines: list[str], status: str, name: str) -> list[str]:
    prefix = f"{status:<5} {name:<10} "
    return [line for line in lines if line.startswith(prefix)]


def one_line(lines: list[str], status: str, name: str) -> str:
    found = lines_of(lines, status, name)
    assert len(found) == 1, f"expected one {status} {name} line in:\n" + "\n".join(lines)
    return found[0]


def free_udp_ports(count: int) -> list[int]:
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def bound_udp_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


@pytest.fixture()
def model_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "model copy"
    shutil.copytree(shipped.models_folder(), folder)
    return folder


def library_with(tmp_path: Path, data: bytes) -> Path:
    """A User Library folder holding `data` where Live keeps the device."""
    library = tmp_path / "User Library"
    target = library / "Presets" / "Audio Effects" / "Max Audio Effect" / shipped.DEVICE_NAME
    target.parent.mkdir(parents=True)
    target.write_bytes(data)
    return library


def test_python_too_old_is_a_failure_with_its_fix():
    old = doctor.check_python((3, 9, 18), "/usr/bin/python3.9")
    assert old.status == "FAIL"
    assert old.line() == ("FAIL  python     3.9.18 (/usr/bin/python3.9) is too old; NOTONO Live needs 3.10 or newer "
                          "-> fix: install Python 3.10 or newer (python.org, or your package manager) and "
                          "reinstall notono-live with it")
    assert doctor.check_python((3, 10, 0), "py").line() == "ok    python     3.10.0 (py)"


def test_a_healthy_setup_passes_and_missing_midi_and_audio_only_warn(tmp_path):
    port, reply_port = free_udp_ports(2)
    library = library_with(tmp_path, shipped.device_file().read_bytes())
    rc, lines, text = run_doctor("--port", str(port), "--reply-port", str(reply_port), "--user-library", str(library))

    assert rc == 0, text
    version = ".".join(map(str, sys.version_info[:3]))
    assert one_line(lines, "ok", "python") == f"ok    python     {version} ({sys.executable})"
    import torch
    assert one_line(lines, "ok", "torch").startswith(
        f"ok    torch      {torch.__version__}: the daemon would use {pick_device('auto')} (")
    size = sum((shipped.models_folder() / name).stat().st_size for name in shipped.MODEL_FILES)
    folder = shipped.models_folder()
    shown = f"{folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder}{os.sep}"
    assert one_line(lines, "ok", "model") == (f"ok    model      {shown} (3 components, {size / 1e6:.1f} MB, "
                                              f"fp16; checksums and tensor shapes match)")
    assert one_line(lines, "ok", "osc port") == \
        f"ok    osc port   {port}/udp is free on 127.0.0.1 for `notono-live serve`"
    assert one_line(lines, "ok", "reply port").startswith(f"ok    reply port {reply_port}/udp is free on 127.0.0.1")
    device = library / "Presets" / "Audio Effects" / "Max Audio Effect" / shipped.DEVICE_NAME
    assert one_line(lines, "ok", "device") == \
        f"ok    device     installed: {device} (same bytes as the shipped device)"
    if NO_ALSA_SEQUENCER:   # this machine has no MIDI system: a warning with the reason and the fix
        assert one_line(lines, "warn", "midi") == (
            "warn  midi       no MIDI: this machine has no ALSA sequencer (/dev/snd/seq is missing: a container, "
            "WSL2, or the snd-seq kernel module is not loaded) -> fix: load the ALSA sequencer "
            "(`sudo modprobe snd-seq`; in a container, pass `--device /dev/snd`); the daemon runs without MIDI "
            "(drive it over OSC, or use --no-midi to silence the warning)")
    else:
        assert len(lines_of(lines, "ok", "midi") + lines_of(lines, "warn", "midi")) == 1, text
    if NO_PORTAUDIO:        # nor PortAudio: a warning naming the library and how to install it
        audio = one_line(lines, "warn", "audio")
        assert audio.startswith("warn  audio      no audio output: the PortAudio library could not be loaded (")
        assert audio.endswith("-> fix: install PortAudio (Debian/Ubuntu: `apt install libportaudio2`; the "
                              "sounddevice wheels for macOS and Windows include it); only previews need it "
                              "(renders and Live are not affected)")
    else:
        assert len(lines_of(lines, "ok", "audio") + lines_of(lines, "warn", "audio")) == 1, text
    assert not [line for line in lines if line.startswith("FAIL")], text
    assert lines[-1].startswith("NOTONO Live can run here")
    compiler = next((shutil.which(name) for name in COMPILERS if shutil.which(name)), None)
    if compiler:
        assert one_line(lines, "ok", "compile") == \
            f"ok    compile    `serve --compile-step` can compile the sampling step ({compiler})"
    else:
        assert one_line(lines, "warn", "compile").startswith("warn  compile    `serve --compile-step` cannot run")


def test_no_cxx_compiler_only_warns_that_the_compiled_step_cannot_run(tmp_path):
    port, reply_port = free_udp_ports(2)
    rc, lines, text = run_doctor("--port", str(port), "--reply-port", str(reply_port),
                                 env={**_env(), "PATH": str(tmp_path)})   # nothing on PATH
    assert one_line(lines, "warn", "compile") == (
        "warn  compile    `serve --compile-step` cannot run: no C++ compiler found -> fix: torch.compile "
        "generates C++ for the CPU: install one, e.g. build-essential on Debian/Ubuntu, Xcode's command line "
        "tools on macOS; the daemon samples without it")
    assert not lines_of(lines, "FAIL", "compile"), text


def test_missing_and_corrupt_model_files_fail_each_with_its_file(model_copy):
    (model_copy / "vqvae.safetensors").unlink()
    top = model_copy / "top_prior.safetensors"
    top.write_bytes(top.read_bytes()[: top.stat().st_size // 2])          # a download cut short
    bottom = model_copy / "bottom_prior.safetensors"
    data = bytearray(bottom.read_bytes())
    data[-5000:-4000] = bytes(1000)                                      # weights overwritten, header intact
    bottom.write_bytes(bytes(data))
    port, reply_port = free_udp_ports(2)

    rc, lines, text = run_doctor("--models", str(model_copy), "--port", str(port), "--reply-port", str(reply_port))

    assert rc == 1, text
    failed = lines_of(lines, "FAIL", "model")
    assert len(failed) == 3, text
    fix = ("-> fix: copy or export the model folder again (`notono-live train export`), or leave out --models and "
           "unset $NOTONO_MODELS to use the shipped model")
    assert failed[0] == f"FAIL  model      vqvae.safetensors: missing from {model_copy}{os.sep} {fix}"
    assert failed[1].startswith("FAIL  model      top_prior.safetensors: not a readable safetensors file (")
    assert failed[1].endswith(fix)
    assert failed[2] == ("FAIL  model      bottom_prior.safetensors: contents do not match the SHA-256 in "
                         f"bottom_prior.json (truncated, corrupt or replaced file) {fix}")
    assert not lines_of(lines, "ok", "model")
    assert lines[-1].startswith("3 problem(s) stop NOTONO Live from running here")


def test_no_torch_fails_and_a_broken_json_is_still_found_without_it(tmp_path, model_copy):
    hidden = tmp_path / "no-torch" / "torch"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ImportError("No module named \'torch\'")\n')
    (model_copy / "vqvae.json").write_text('{"format": "notono-checkpoint", ')
    port, reply_port = free_udp_ports(2)
    env = _env(PYTHONPATH=os.pathsep.join(filter(None, [str(hidden.parent), os.environ.get("PYTHONPATH")])))

    rc, lines, text = run_doctor("--models", str(model_copy), "--port", str(port), "--reply-port", str(reply_port),
                                 env=env)

    assert rc == 1, text
    assert one_line(lines, "FAIL", "torch").startswith(
        "FAIL  torch      torch cannot be imported (ImportError: No module named 'torch') -> fix: install torch "
        "first, as the README's install table says")
    model = one_line(lines, "FAIL", "model")
    assert model.startswith("FAIL  model      vqvae.json: not valid JSON (")


def test_daemon_port_taken_by_another_program_fails_naming_it():
    taken = bound_udp_socket()
    try:
        port = taken.getsockname()[1]
        (reply_port,) = free_udp_ports(1)
        rc, lines, text = run_doctor("--port", str(port), "--reply-port", str(reply_port))
    finally:
        taken.close()

    assert rc == 1, text
    line = one_line(lines, "FAIL", "osc port")
    if sys.platform.startswith("linux"):   # /proc names the process: this test's own
        assert line.startswith(f"FAIL  osc port   {port}/udp is taken by ")
        assert f"(pid {os.getpid()}: " in line
    else:
        assert line.startswith(f"FAIL  osc port   {port}/udp is taken by another program")
    assert ", not a NOTONO daemon -> fix: stop that program, or run `notono-live serve --port P` with a free port P" \
        in line
    assert len([l for l in lines if l.startswith("FAIL")]) == 1, text


def test_a_running_daemon_is_recognised_and_other_problems_only_warn(tmp_path):
    reply_taken = bound_udp_socket()
    library = library_with(tmp_path, b"ampf an older device")
    daemon = DaemonProcess(tmp_path / "data", ["--threads", "1", "--log-level", "warning"]).start()
    try:
        reply_port = reply_taken.getsockname()[1]
        with NotonoClient(daemon.host, daemon.port) as client:   # what the daemon says of itself
            _, version, model, device_name, *_ = client.connect().final[1]
            client.request("/notono/bye")
        rc, lines, text = run_doctor("--port", str(daemon.port), "--reply-port", str(reply_port),
                                     "--user-library", str(library))
        still_running = daemon.alive()
    finally:
        daemon.stop()
        reply_taken.close()

    assert rc == 0, text
    assert one_line(lines, "ok", "osc port") == (
        f"ok    osc port   {daemon.port}/udp: a NOTONO daemon answers there (notono-live {version}, model {model} "
        f"on {device_name}, idle); a second `notono-live serve` would need another --port")
    assert version == __version__ and device_name == pick_device("auto")
    assert still_running
    reply = one_line(lines, "warn", "reply port")
    assert reply.startswith(f"warn  reply port {reply_port}/udp is taken by ")
    if sys.platform.startswith("linux"):
        assert f"(pid {os.getpid()}: " in reply
    assert "the device cannot receive replies here -> fix: stop that program, or set the device's Reply port" in reply
    device = library / "Presets" / "Audio Effects" / "Max Audio Effect" / shipped.DEVICE_NAME
    assert one_line(lines, "warn", "device").startswith(
        f"warn  device     {device} differs from the device of this notono-live")
    assert "-> fix: `notono-live install-device --force --to " in one_line(lines, "warn", "device")
