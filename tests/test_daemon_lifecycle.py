"""The daemon's life: killed with SIGKILL mid-render and restarted, listening beyond loopback only
for allowed clients, refusing unsafe settings, and stopping cleanly on SIGTERM."""
from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import soundfile as sf

from notono_live.daemon.process import REPO_ROOT, DaemonProcess
from notono_live.engine.store import is_temporary
from notono_live.osc.client import NotonoClient


def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_sigkill_during_rendering_loses_no_completed_version(tmp_path):
    data = tmp_path / "data"
    completed: dict[tuple[int, int], dict] = {}
    daemon = DaemonProcess(data).start()
    try:
        with NotonoClient(daemon.host, daemon.port, timeout=300.0) as client:
            client.connect()
            first = client.request("/notono/generate", 60, "organ", 1.0, 0.8, 1, 1)
            assert first.ok, first.error
            sid = first.sounds[0]["sound"]
            edit = client.request("/notono/inpaint/region", sid, "top", 0, 0, 4, 1)
            assert edit.ok, edit.error
            assert client.request("/notono/sound/undo", sid).ok
            for s in first.sounds + edit.sounds:
                completed[(s["sound"], s["version"])] = s
            digests = {key: (_digest(s["wav"]), _digest(s["png"])) for key, s in completed.items()}
            # several renders in flight; kill the process while the worker is writing files
            in_flight = [client.send("/notono/generate", 50, "brass", 1.0, 0.8, 3, 2),
                         client.send("/notono/region/randomize", sid, "top", 0, 0, 32, 4, 3),
                         client.send("/notono/generate", 52, "reed", 1.0, 0.8, 2, 4)]
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                with client._cond:
                    stages = [m for rid in in_flight for m in client._replies[rid].messages]
                if any(addr == "/notono/progress" and "writing" in args[2] for addr, args in stages):
                    break
                time.sleep(0.001)
            daemon.kill()
            time.sleep(0.2)
            with client._cond:
                # the kill must have cut a render short: one that had begun work got no final reply
                cut_short = [rid for rid in in_flight if client._replies[rid].elapsed is None and any(
                    addr == "/notono/progress" and not args[2].startswith("queued")
                    for addr, args in client._replies[rid].messages)]
                assert cut_short, "no render was running when SIGKILL landed, so the test proved nothing"
                for rid in in_flight:
                    reply = client._replies[rid]
                    for address, args in reply.messages:
                        if address == "/notono/sound":
                            s = dict(zip(["sound", "version", "wav", "png"], args[1:5]))
                            completed[(s["sound"], s["version"])] = s
    finally:
        daemon.kill()
    # what a user (or Live) sees right after the crash: only whole files under their final names
    output = data / "samples"
    for path in output.iterdir():
        if path.name.startswith("."):
            assert is_temporary(path.name)    # a temporary: hidden, and cleaned on restart
        elif path.suffix == ".wav":
            info = sf.info(str(path))
            assert info.frames == 4 * 44_100 and info.subtype == "PCM_24"
            sf.read(str(path))
    restarted = DaemonProcess(data, log_path=tmp_path / "restart.log").start()
    try:
        import re
        restored = int(re.search(r"(\d+) sound\(s\) restored", " ".join(restarted.stdout_lines)).group(1))
        assert restored >= len({k[0] for k in completed})
        with NotonoClient(restarted.host, restarted.port, timeout=60.0) as client:
            client.connect()
            listed = client.request("/notono/sound/list")
            sounds = {item[0] for item in listed.of("/notono/sound/item")}
            for (sound, version), s in completed.items():
                assert sound in sounds
                got = client.request("/notono/sound/get", sound, version)
                assert got.ok, (sound, version, got.error)
                assert got.sounds[0]["wav"] == s["wav"]
                assert sf.info(s["wav"]).frames == 4 * 44_100
                if (sound, version) in digests:
                    assert (_digest(s["wav"]), _digest(s["png"])) == digests[(sound, version)]
            # the undo made before the crash is still in effect
            current = client.request("/notono/sound/get", sid, 0).sounds[0]["version"]
            assert current in (1, 3)   # 1 after the undo, or 3 if the in-flight randomize committed
            assert client.request("/notono/sound/versions", sid).final[1][1] >= 2
            # and the session keeps going: new versions get new numbers, old files untouched
            more = client.request("/notono/region/randomize", sid, "bottom", 0, 0, 2, 2, 9)
            assert more.ok and more.sounds[0]["version"] > max(v for s, v in completed if s == sid)
    finally:
        assert restarted.stop() == 0
    leftovers = [p for p in data.rglob("*") if is_temporary(p.name)]
    assert not leftovers, leftovers


def _non_loopback_ipv4() -> str | None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))   # no packet is sent; this only picks the outgoing interface
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def _hello_from(address: str, port: int, source: str) -> bool:
    """Say hello from `source`; True if the daemon answered."""
    client = NotonoClient("0.0.0.0", port, timeout=2.0)
    try:
        client.target = (address, port)
        client.sender.close()
        client.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.sender.bind((source, 0))
        client.hello(timeout=2.0)
        return True
    except TimeoutError:
        return False
    finally:
        client.close()


def test_serve_with_midi_on_warns_once_where_midi_cannot_work(tmp_path):
    """Issue 6: `serve` without --no-midi on a machine with no MIDI system (a container, CI) starts
    with one clear warning and serves; where MIDI works, it opens the port without a warning."""
    from notono_live.midi import midi_system_problem

    problem = midi_system_problem()
    daemon = DaemonProcess(tmp_path / "d", ["--midi-mapping", str(tmp_path / "mapping.toml")], midi=True).start()
    try:
        with NotonoClient(daemon.host, daemon.port, timeout=60.0) as client:
            client.connect()
            pong = client.request("/notono/ping")
            assert pong.final[0] == "/notono/pong"
            mappings = client.request("/notono/midi/mappings")
    finally:
        assert daemon.stop() == 0
    output = daemon.log_text().splitlines() + daemon.stdout_lines
    midi_warnings = [line for line in output if "MIDI" in line and ("WARNING" in line or "ERROR" in line)]
    if problem:
        assert len(midi_warnings) == 1, output
        assert "MIDI input disabled" in midi_warnings[0] and "Running without MIDI" in midi_warnings[0]
        assert mappings.error is not None and mappings.error[0] == "midi_unavailable", mappings.messages
    else:
        assert midi_warnings == [], output
        assert mappings.ok, mappings.error


def test_midi_in_names_the_midi_input():
    from notono_live.cli import build_parser
    from notono_live.daemon.cli import load_settings

    for option in ("--midi-in", "--midi-port"):   # issue 6 names --midi-in; --midi-port stays an alias
        args = build_parser().parse_args(["serve", option, "nanoKONTROL2"])
        assert load_settings(args)["midi_port"] == "nanoKONTROL2"


def test_refuses_unsafe_or_unknown_settings(tmp_path):
    serve = [sys.executable, "-m", "notono_live", "serve", "--port", "0", "--data-dir", str(tmp_path), "--no-midi"]
    bad = tmp_path / "bad.toml"

    def refused(arguments: list[str], config: str | None = None) -> str:
        """serve's stderr for these arguments (and this config file), after checking it exited non-zero."""
        if config is not None:
            bad.write_text(config)
            arguments = arguments + ["--config", str(bad)]
        run = subprocess.run(serve + arguments, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert run.returncode != 0, f"serve {arguments} started"
        return run.stderr

    assert "--allow" in refused(["--host", "0.0.0.0"])
    assert "colour" in refused([], 'port = 0\ncolour = "blue"\n')
    assert "step_precision 'int4'" in refused([], 'step_precision = "int4"\n')
    assert "guidance 12" in refused(["--guidance", "12"])
    assert "candidates 0 must be" in refused([], "candidates = 0\n")
    assert "candidates 9 must be" in refused(["--candidates", "9"])
    assert "sampling_threads 0 must be" in refused(["--sampling-threads", "0"])
    assert "sampling_threads '2' must be" in refused([], 'sampling_threads = "2"\n')
    assert "compile_step 'yes' must be true or false" in refused([], 'compile_step = "yes"\n')


def test_step_precision_setting_reaches_the_samplers():
    from notono_live.daemon.cli import DEFAULTS, load_model

    for setting, expected in (("auto", "float16"), ("float32", "float32"), ("float16", "float16"),
                              ("bfloat16", "bfloat16")):
        model = load_model({**DEFAULTS, "untrained": "lite", "step_precision": setting}, "cpu")
        assert model.info()["step_precision"] == expected
        assert model.bottom_prior.step_precision == getattr(torch, expected)


def test_sampling_threads_setting_reaches_the_model():
    from notono_live.daemon.cli import DEFAULTS, load_model

    assert load_model({**DEFAULTS, "untrained": "lite"}, "cpu").sampling_threads == 1
    assert load_model({**DEFAULTS, "untrained": "lite", "sampling_threads": 2}, "cpu").sampling_threads == 2


def test_pick_on_setting_reaches_the_model_and_a_wrong_one_is_named(tmp_path):
    import argparse

    from notono_live.daemon.cli import DEFAULTS, load_model, load_settings, register

    assert load_model({**DEFAULTS, "untrained": "small"}, "cpu").pick_on == "full"   # the model's own
    assert load_model({**DEFAULTS, "untrained": "small", "pick_on": "previews"}, "cpu").pick_on == "previews"
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    config = tmp_path / "notono.toml"
    config.write_text('pick_on = "top maps"\n')
    settings = load_settings(parser.parse_args(["serve", "--config", str(config)]))
    with pytest.raises(ValueError, match="pick_on 'top maps' must be one of full, previews"):
        load_model({**settings, "untrained": "small"}, "cpu")
    assert load_settings(parser.parse_args(["serve", "--pick-on", "previews"]))["pick_on"] == "previews"


def test_config_file_opens_another_interface_to_allowed_clients_only(tmp_path):
    own = _non_loopback_ipv4()
    if own is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    config = tmp_path / "notono.toml"
    config.write_text(f'host = "0.0.0.0"\nallow = ["{own}"]\nsample_rate = 22050\nqueue_size = 3\n'
                      f'allow_dirs = ["{(tmp_path / "extra").as_posix()}"]\n')
    daemon = DaemonProcess(tmp_path / "d", ["--config", str(config)]).start()
    try:
        assert _hello_from(own, daemon.port, own)                 # on the allow-list
        assert _hello_from("127.0.0.1", daemon.port, "127.0.0.1")  # loopback is always allowed
        with NotonoClient(daemon.host if daemon.host != "0.0.0.0" else "127.0.0.1", daemon.port,
                          timeout=60.0) as client:
            hello = client.connect()
            assert hello.final[1][6] == 22050
            assert client.request("/notono/output/folder", str(tmp_path / "extra" / "x")).ok
    finally:
        assert daemon.stop() == 0


def test_packets_from_addresses_off_the_allow_list_are_dropped_and_logged(tmp_path, caplog):
    """The server's filter, in-process on a real socket: a datagram from a stranger gets no reply and
    touches nothing; one from an allowed address does."""
    from notono_live.daemon.worker import InferenceWorker
    from notono_live.engine.engine import Engine
    from notono_live.engine.store import SoundStore
    from notono_live.osc.server import OscServer, encode_message

    engine = Engine(None, SoundStore(tmp_path / "s"), tmp_path / "o")   # no model: nothing here renders
    worker = InferenceWorker(1)
    server = OscServer(engine, worker, "127.0.0.1", 0, allow=["192.0.2.10"])
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.5)
    try:
        hello = encode_message("/notono/hello", [1, listener.getsockname()[1]])
        with caplog.at_level("WARNING", logger="notono_live.osc"):
            server.handle_datagram(hello, ("198.51.100.7", 4000))
        assert "198.51.100.7" in caplog.text and "allow-list" in caplog.text
        assert not server.clients
        server.handle_datagram(hello, ("192.0.2.10", 4000))
        assert server.clients == {("192.0.2.10", 4000): ("192.0.2.10", listener.getsockname()[1])}
        server.handle_datagram(hello, ("127.0.0.1", 4001))      # loopback: allowed, and answered
        data, _ = listener.recvfrom(65536)
        assert data.startswith(b"/notono/hello")
    finally:
        listener.close()
        server.close()
        worker.stop()


def test_ready_comes_before_the_levelling_and_pitch_tools_which_warm_on_a_thread_of_their_own(tmp_path):
    """The daemon's warm-up leaves scipy and pyloudnorm (the levelling) and librosa (the pitch
    checks), about a second each to import, to `warm_render_tools`, which runs once the daemon is
    ready; that thread imports them, levels a sound and runs both pitch checks. Nothing before ready
    imports scipy (the Mel pseudo-inverse is torch's)."""
    script = ("import sys; from pathlib import Path; from notono_live.models.bundle import NotonoModel; "
              "from notono_live.daemon.cli import warm_up, warm_render_tools; "
              "from notono_live.engine.engine import Engine; from notono_live.engine.store import SoundStore; "
              f"d = Path({str(tmp_path)!r}); m = NotonoModel.untrained('lite'); "
              "e = Engine(m, SoundStore(d / 'session'), d / 'samples', allowed_folders=[d], sample_rate=44100); "
              "warm_up(m, e); names = ('scipy', 'pyloudnorm', 'librosa'); "
              "print(*[n in sys.modules for n in names]); "
              "warm_render_tools(e.sample_rate).join(); print(*[n in sys.modules for n in names])")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False"] * 3 + ["True"] * 3, run.stdout + run.stderr
    assert "could not warm" not in run.stderr


def test_compile_step_settings_resolve_on_off_or_left_to_the_model(tmp_path, monkeypatch):
    import argparse

    from notono_live.daemon.cli import load_settings, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    monkeypatch.delenv("NOTONO_COMPILE_STEP", raising=False)
    for arguments, expected in (([], None), (["--compile-step"], True), (["--no-compile-step"], False)):
        args = parser.parse_args(["serve", *arguments])
        assert load_settings(args)["compile_step"] is expected, arguments
    config = tmp_path / "serve.toml"
    config.write_text("compile_step = false\n")
    assert load_settings(parser.parse_args(["serve", "--config", str(config)]))["compile_step"] is False
    # the environment sets the default; the file and the command line still override it
    monkeypatch.setenv("NOTONO_COMPILE_STEP", "0")
    assert load_settings(parser.parse_args(["serve"]))["compile_step"] is False
    assert load_settings(parser.parse_args(["serve", "--compile-step"]))["compile_step"] is True
    config.write_text("compile_step = true\n")
    assert load_settings(parser.parse_args(["serve", "--config", str(config)]))["compile_step"] is True
    monkeypatch.setenv("NOTONO_COMPILE_STEP", "yes")
    with pytest.raises(SystemExit, match="NOTONO_COMPILE_STEP"):
        load_settings(parser.parse_args(["serve"]))
