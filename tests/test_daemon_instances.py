"""Several devices on one daemon: a MIDI-triggered render goes to the one device whose sound it is, so
it becomes one clip, not one per device. In-process server with the shipped model, real UDP sockets on
loopback, and the daemon's own trigger path (`OscServer.submit_action`, which the MIDI controller calls).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from notono_live.daemon.worker import InferenceWorker
from notono_live.engine.engine import Engine
from notono_live.engine.store import SoundStore
from notono_live.models.bundle import NotonoModel
from notono_live.osc import protocol as p
from notono_live.osc.client import NotonoClient
from notono_live.osc.server import OscServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("instances")
    engine = Engine(NotonoModel.load(), SoundStore(folder / "session"), folder / "samples",
                    allowed_folders=[folder], candidates=1)
    worker = InferenceWorker(8)
    server = OscServer(engine, worker, "127.0.0.1", 0)
    engine.on_trigger = server.submit_action
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(5)
        server.close()
        worker.stop()


def _wait_for_done(client: NotonoClient, timeout: float = 30.0) -> list[tuple[str, list]]:
    """The unsolicited (-1) messages a client got, once the final one has arrived."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with client._cond:
            got = [m for m in client.unsolicited if m[1] and m[1][0] == p.DAEMON_REQUEST_ID]
        if any(address in ("/notono/done", "/notono/error") for address, _ in got):
            return got
        time.sleep(0.02)
    raise AssertionError(f"no final -1 reply within {timeout} s; got {client.unsolicited}")


def _unsolicited(client: NotonoClient) -> list[tuple[str, list]]:
    with client._cond:
        return [m for m in client.unsolicited if m[1] and m[1][0] == p.DAEMON_REQUEST_ID]


def test_midi_triggered_renders_reach_only_the_owner_of_the_current_sound(server, rendered_wav):
    with NotonoClient(server.host, server.port, timeout=120) as a, \
            NotonoClient(server.host, server.port, timeout=120) as b, \
            NotonoClient(server.host, server.port, timeout=120) as c:
        for client in (a, b, c):
            assert client.connect().ok
        # b is the newest client, but a made the current sound: a owns it
        first = b.request("/notono/encode", str(rendered_wav), 60, "keyboard")
        assert first.ok, first.error
        mine = a.request("/notono/encode", str(rendered_wav), 60, "keyboard")
        assert mine.ok, mine.error
        sound = mine.sounds[0]["sound"]
        assert server.engine.current_sound == sound

        server.submit_action("inpaint")          # what a mapped pad does
        got = _wait_for_done(a)
        sounds = [args for address, args in got if address == "/notono/sound"]
        assert len(sounds) == 1 and sounds[0][1] == sound and sounds[0][9] == "inpaint", got
        time.sleep(0.3)                          # anything sent to the others would have arrived by now
        assert _unsolicited(b) == [] and _unsolicited(c) == [], "another device got the owner's render"

        # c selects b's sound: it is now c's, and the next MIDI action answers c alone
        assert c.request("/notono/sound/select", first.sounds[0]["sound"]).ok
        with a._cond:
            a.unsolicited.clear()
        server.submit_action("inpaint")
        got = _wait_for_done(c)
        assert [args[1] for address, args in got if address == "/notono/sound"] == [first.sounds[0]["sound"]]
        time.sleep(0.3)
        assert _unsolicited(a) == [] and _unsolicited(b) == []

        # the owner said bye: the newest client still connected gets it instead of nobody
        with c._cond:
            c.unsolicited.clear()
        assert c.request("/notono/bye").ok
        server.submit_action("undo")
        got = _wait_for_done(b)
        assert [args[1:3] for address, args in got if address == "/notono/sound"] == [[first.sounds[0]["sound"], 1]]
        time.sleep(0.3)
        assert _unsolicited(a) == [] and _unsolicited(c) == []


def test_a_midi_triggered_render_goes_into_its_owners_live_project(server, rendered_wav, tmp_path):
    project = tmp_path / "Gig Project"
    project.mkdir()
    (project / "Gig.als").write_bytes(b"a saved Live set")
    with NotonoClient(server.host, server.port, timeout=120) as owner, \
            NotonoClient(server.host, server.port, timeout=120) as other:
        assert owner.connect().ok and other.connect().ok
        assert owner.request("/notono/output/project", str(project / "Gig.als")).ok
        made = owner.request("/notono/encode", str(rendered_wav), 60, "keyboard")
        assert made.ok, made.error
        assert Path(made.sounds[0]["wav"]).parent == (project / "Samples" / "NOTONO").resolve()
        server.submit_action("new_bottom")       # a pad: no request, no client of its own
        got = _wait_for_done(owner)
        (sound,) = [args for address, args in got if address == "/notono/sound"]
        assert Path(sound[3]).parent == (project / "Samples" / "NOTONO").resolve(), sound
        assert _unsolicited(other) == []
