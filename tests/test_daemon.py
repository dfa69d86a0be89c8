"""A real `notono-live serve` process with the shipped model, driven over real UDP on loopback.

Every documented operation is exercised and its files checked on disk; then bad input of every kind,
a hypothesis fuzz run, and a flood. The daemon must survive all of it, lose no file, and answer
each request that has a reply port with a final message.
"""
from __future__ import annotations

import hashlib
import random
import struct
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from notono_live.codemaps import Codemaps
from notono_live.constants import FAMILIES
from notono_live.daemon.process import DaemonProcess
from notono_live.osc import protocol as p
from notono_live.osc.client import NotonoClient
from notono_live.osc.server import encode_message

SR = 44_100


# --- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("daemon")
    (root / "live-project" / "Samples").mkdir(parents=True)
    proc = DaemonProcess(root / "data", ["--allow-dir", str(root / "live-project"), "--queue-size", "6"])
    proc.start()
    proc.root = root
    yield proc
    code = proc.stop()
    assert code == 0, f"the daemon did not shut down cleanly (exit {code}); log:\n{proc.log_text()[-2000:]}"
    assert "Traceback" not in proc.log_text(), proc.log_text()[-4000:]


@pytest.fixture(scope="module")
def client(daemon):
    with NotonoClient(daemon.host, daemon.port, timeout=120.0) as c:
        c.connect()
        yield c


@pytest.fixture(scope="module")
def sound(client):
    """A generated sound: its /notono/sound reply as a dict."""
    reply = client.request("/notono/generate", 60, "keyboard", 1.0, 0.8, 1, 7)
    assert reply.ok, reply.error
    return reply.sounds[0]


@pytest.fixture(scope="module")
def trained_model(client):
    """The shipped model must be the trained one: hello names it after its training summaries."""
    model = client.hello(SR).final[1][2]
    assert model.startswith("notono-") and "untrained" not in model and "partly" not in model, (
        f"hello reports model {model!r}: the shipped models/ folder must hold the trained weights")
    return model


def check_files(sound: dict, sample_rate: int = SR) -> np.ndarray:
    """The WAV and PNG of a /notono/sound reply: complete, at the right rate, not silent."""
    wav, png = Path(sound["wav"]), Path(sound["png"])
    assert wav.is_absolute() and wav.is_file() and png.is_file()
    info = sf.info(str(wav))
    assert (info.samplerate, info.channels, info.subtype) == (sample_rate, 1, "PCM_24")
    assert info.frames == 4 * sample_rate
    audio, _ = sf.read(str(wav), dtype="float32")
    assert np.sqrt(np.mean(audio ** 2)) > 1e-4, f"{wav} is silent"
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] >= 128
    assert sound["sample_rate"] == sample_rate
    assert sound["label"].endswith(f"#{sound['sound']} v{sound['version']}")
    return audio


def codemaps_of(client: NotonoClient, sound: int, version: int = 0) -> Codemaps:
    reply = client.request("/notono/codemap/get", sound, version)
    assert reply.ok, reply.error
    rows = reply.of("/notono/codemap/row")
    assert len(rows) == 96 and reply.final[1][1] == 96
    top = [r[4:] for r in rows if r[2] == "top"]
    bottom = [r[4:] for r in rows if r[2] == "bottom"]
    assert all(len(r) == 4 for r in top) and all(len(r) == 8 for r in bottom)
    return Codemaps(np.array(top), np.array(bottom))


def snapshot(folder: Path) -> dict[str, str]:
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in folder.rglob("*") if f.is_file() and f.suffix in (".wav", ".png")}


def expect_error(client: NotonoClient, code: str, address: str, *args, needle: str = "") -> str:
    reply = client.request(address, *args, timeout=60.0)
    assert reply.error is not None, f"{address} {args} succeeded: {reply.messages}"
    assert reply.error[0] == code, reply.error
    assert needle.lower() in reply.error[1].lower(), reply.error
    return reply.error[1]


# --- every operation --------------------------------------------------------------------------

def test_hello_and_ping(daemon, client):
    hello = client.hello(SR)
    version, model, device, queue, folder, rate, protocol = hello.final[1][1:]
    assert model and device in ("cpu", "cuda", "mps") and queue >= 0 and protocol == p.PROTOCOL_VERSION
    assert Path(folder).is_dir() and rate == SR
    pong = client.request("/notono/ping")
    assert pong.final[0] == "/notono/pong" and pong.final[1][1:] == [0, 0]


def test_generate_variations_are_new_sounds_with_files(client):
    reply = client.request("/notono/generate", 48, "organ", 1.0, 0.8, 2, 11)
    assert reply.ok, reply.error
    stages = [args[1] for args in reply.of("/notono/progress")]
    assert stages[0].startswith("queued") and "writing" in stages
    sounds = reply.sounds
    assert len(sounds) == 2 and reply.final[1][1] == 2
    assert sounds[0]["sound"] != sounds[1]["sound"]
    for s in sounds:
        assert (s["version"], s["parent"], s["operation"], s["pitch"], s["family"]) == (1, 0, "generate", 48, "organ")
        assert s["label"].startswith("organ C2 #")
        check_files(s)
    first, second = (codemaps_of(client, s["sound"]) for s in sounds)
    assert first != second


@pytest.mark.parametrize("pitch,family", [(24, "keyboard"), (36, "brass")])
def test_generated_pitch_is_near_the_request(client, trained_model, pitch, family):
    """The issue's pitch measure (median pYIN f0 within 50 cents) through the whole daemon path:
    conditioning, decoding, resampling to the client's rate, the WAV on disk. Two pitches where the
    shipped model is reliable: a keyboard at MIDI 24 (4 of 4 in the eval's grid) and brass at MIDI 36
    (19 of 20 over five seeds when this test was written). Its accuracy over the whole family x pitch
    grid is the eval's job (models/README.md). Most of the 4 variations of a fixed seed must pass."""
    from notono_live.audio_io import ResampledAudioWarning, load_audio
    from notono_live.evaluation.pitch import estimate_f0, pitch_within_cents

    reply = client.request("/notono/generate", pitch, family, 1.0, 0.8, 4, 3)
    assert reply.ok, reply.error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResampledAudioWarning)   # the WAVs are at 44.1 kHz; pYIN runs at 16
        audio = [load_audio(s["wav"]) for s in reply.sounds]
    passed = [pitch_within_cents(a, 16_000, pitch, 50.0) for a in audio]
    assert sum(passed) >= 2, (f"{sum(passed)} of 4 variations within 50 cents of MIDI {pitch}: median f0 "
                              f"{[round(estimate_f0(a, 16_000), 1) for a in audio]} Hz")


@pytest.mark.parametrize("fmt,subtype,rate,channels", [
    ("WAV", "PCM_16", 44_100, 2), ("AIFF", "PCM_24", 22_050, 1), ("FLAC", "PCM_16", 48_000, 2),
    ("MP3", "MPEG_LAYER_III", 44_100, 1)])
def test_encode_any_audio_file(client, daemon, rendered_wav, fmt, subtype, rate, channels):
    import soxr

    if fmt not in sf.available_formats():
        pytest.skip(f"libsndfile here cannot write {fmt}")
    audio, sr = sf.read(str(rendered_wav), dtype="float32")
    audio = soxr.resample(audio, sr, rate).astype(np.float32)
    audio = audio[: int(rate * (3.0 if fmt == "AIFF" else 5.0))]   # shorter and longer than 4 s
    if channels == 2:
        audio = np.stack([audio, 0.5 * audio], axis=1)
    source = daemon.root / f"input with spaces.{fmt.lower()}"
    sf.write(str(source), audio, rate, format=fmt, subtype=subtype)
    reply = client.request("/notono/encode", str(source), 60, "keyboard")
    assert reply.ok, reply.error
    s = reply.sounds[0]
    assert (s["operation"], s["version"], s["pitch"], s["family"]) == ("encode", 1, 60, "keyboard")
    check_files(s)


def test_inpaint_region_keeps_every_cell_outside(client, sound):
    before = codemaps_of(client, sound["sound"])
    reply = client.request("/notono/inpaint/region", sound["sound"], "top", 0, 0, 8, 2, -1, "", 1.0, 0.8, 5)
    assert reply.ok, reply.error
    s = reply.sounds[0]
    assert s["sound"] == sound["sound"] and s["parent"] == sound["version"] and s["operation"] == "inpaint"
    check_files(s)
    after = codemaps_of(client, sound["sound"], s["version"])
    mask = np.zeros((32, 4), bool)
    mask[0:8, 0:2] = True
    bottom_mask = np.repeat(np.repeat(mask, 2, 0), 2, 1)
    assert np.array_equal(after.top[~mask], before.top[~mask])
    assert np.array_equal(after.bottom[~bottom_mask], before.bottom[~bottom_mask])
    # a bottom region with new conditioning changes only bottom cells inside it
    reply = client.request("/notono/inpaint/region", sound["sound"], "bottom", 60, 6, 4, 2, 72, "flute", 1.0, 0.8, 5)
    assert reply.ok, reply.error
    s2 = reply.sounds[0]
    assert (s2["pitch"], s2["family"], s2["parent"]) == (72, "flute", s["version"])
    again = codemaps_of(client, sound["sound"])
    bmask = np.zeros((64, 8), bool)
    bmask[60:64, 6:8] = True
    assert np.array_equal(again.top, after.top)
    assert np.array_equal(again.bottom[~bmask], after.bottom[~bmask])


def test_inpaint_cells_and_bottom_regeneration(client, sound):
    base = codemaps_of(client, sound["sound"])
    reply = client.request("/notono/inpaint/cells", sound["sound"], "top", -1, "", 1.0, 0.8, 9, 3, 1, 20, 3)
    assert reply.ok, reply.error
    after = codemaps_of(client, sound["sound"])
    mask = np.zeros((32, 4), bool)
    mask[3, 1] = mask[20, 3] = True
    assert np.array_equal(after.top[~mask], base.top[~mask])
    check_files(reply.sounds[0])
    reply = client.request("/notono/bottom/regenerate", sound["sound"], -1, "", 1.0, 0.8, 4)
    assert reply.ok, reply.error
    assert reply.sounds[0]["operation"] == "bottom"
    regenerated = codemaps_of(client, sound["sound"])
    assert np.array_equal(regenerated.top, after.top) and not np.array_equal(regenerated.bottom, after.bottom)
    check_files(reply.sounds[0])


def test_guidance_argument_reaches_the_sampler(client, sound, trained_model):
    """Same seed, same request: an explicit guidance equal to the default draws the same codes as
    leaving it out (-1), and another scale draws others. The default is DEFAULT_GUIDANCE to generate,
    1 to edit."""
    from notono_live.models.bundle import DEFAULT_GUIDANCE

    def generate(*guidance):
        reply = client.request("/notono/generate", 40, "brass", 1.0, 0.8, 1, 21, 0, *guidance)
        assert reply.ok, reply.error
        return codemaps_of(client, reply.sounds[0]["sound"])

    default, explicit, plain = generate(), generate(DEFAULT_GUIDANCE), generate(1.0)
    assert np.array_equal(default.top, explicit.top) and np.array_equal(default.bottom, explicit.bottom)
    assert not np.array_equal(default.bottom, plain.bottom)
    sid = sound["sound"]
    for address, args in (("/notono/inpaint/region", ("top", 4, 0, 8, 2, -1, "", 1.0, 0.8, 33)),
                          ("/notono/bottom/regenerate", (-1, "", 1.0, 0.8, 34))):
        versions = []
        for guidance in ((), (1.0,), (2.0,)):
            assert client.request("/notono/sound/checkout", sid, sound["version"]).ok
            reply = client.request(address, sid, *args, *guidance)
            assert reply.ok, reply.error
            versions.append(codemaps_of(client, sid))
        assert np.array_equal(versions[0].bottom, versions[1].bottom), address
        assert not np.array_equal(versions[0].bottom, versions[2].bottom), address


def test_set_cells_erase_randomize(client, sound):
    reply = client.request("/notono/codemap/set", sound["sound"], "top", 0, 0, 511, 31, 3, 7, 5, 2, 0)
    assert reply.ok, reply.error
    maps = codemaps_of(client, sound["sound"])
    assert (maps.top[0, 0], maps.top[31, 3], maps.top[5, 2]) == (511, 7, 0)
    check_files(reply.sounds[0])
    reply = client.request("/notono/region/erase", sound["sound"], "top", 16, 1, 16, 2, 40.0)
    assert reply.ok, reply.error
    assert reply.sounds[0]["operation"] == "erase"
    erased = codemaps_of(client, sound["sound"])
    mask = np.zeros((32, 4), bool)
    mask[16:32, 1:3] = True
    assert np.array_equal(erased.top[~mask], maps.top[~mask])
    reply = client.request("/notono/region/randomize", sound["sound"], "bottom", 0, 0, 64, 8, 3)
    assert reply.ok, reply.error
    randomized = codemaps_of(client, sound["sound"])
    assert np.array_equal(randomized.top, erased.top)
    assert np.mean(randomized.bottom != erased.bottom) > 0.9
    check_files(reply.sounds[0])


def test_undo_redo_checkout_lists(client, rendered_wav):
    made = client.request("/notono/encode", str(rendered_wav), 64, "brass")
    sid = made.sounds[0]["sound"]
    v2 = client.request("/notono/region/randomize", sid, "bottom", 0, 0, 4, 4, 1).sounds[0]
    undone = client.request("/notono/sound/undo", sid)
    assert undone.sounds[0]["version"] == 1 and undone.sounds[0]["wav"] == made.sounds[0]["wav"]
    assert client.request("/notono/sound/redo", sid).sounds[0]["version"] == 2
    assert client.request("/notono/sound/checkout", sid, 1).sounds[0]["version"] == 1
    branch = client.request("/notono/region/randomize", sid, "top", 0, 0, 2, 2, 5).sounds[0]
    assert (branch["version"], branch["parent"]) == (3, 1)
    versions = client.request("/notono/sound/versions", sid)
    items = versions.of("/notono/version/item")
    assert [(i[1], i[2], i[9]) for i in items] == [(1, 0, 0), (2, 1, 0), (3, 1, 1)]
    assert all(Path(i[7]).is_file() and Path(i[8]).is_file() for i in items)
    assert Path(v2["wav"]).is_file()   # versions are never deleted by undo or branching
    got = client.request("/notono/sound/get", sid, 2).sounds[0]
    assert got["wav"] == v2["wav"]
    listed = client.request("/notono/sound/list")
    row = [i for i in listed.of("/notono/sound/item") if i[0] == sid][0]
    assert row[1:3] == [3, 3] and listed.final[1][1] == len(listed.of("/notono/sound/item"))
    assert client.request("/notono/sound/select", sid).ok


def test_find_a_render_by_path_or_by_a_copy_of_it(client, daemon, rendered_wav, tmp_path):
    made = client.request("/notono/generate", 57, "reed", 1.0, 0.8, 1, 11).sounds[0]
    sid = made["sound"]
    v2 = client.request("/notono/region/randomize", sid, "bottom", 0, 0, 2, 2, 3).sounds[0]
    found = client.request("/notono/sound/find", made["wav"])
    assert found.ok, found.error
    assert (found.sounds[0]["sound"], found.sounds[0]["version"]) == (sid, 1)
    # found means current: the next edit branches from the version found, not from version 2
    branch = client.request("/notono/region/randomize", sid, "top", 0, 0, 1, 1, 4).sounds[0]
    assert (branch["version"], branch["parent"]) == (3, 1)
    # Live's Collect All and Save copies the file into the project: same bytes, another path
    copy = tmp_path / "Samples" / "Imported" / "reed C2 #5 v2.wav"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(Path(v2["wav"]).read_bytes())
    again = client.request("/notono/sound/find", str(copy))
    assert again.ok, again.error
    assert (again.sounds[0]["sound"], again.sounds[0]["version"], again.sounds[0]["wav"]) == (sid, 2, v2["wav"])
    expect_error(client, "not_found", "/notono/sound/find", str(rendered_wav), needle="not a render")
    expect_error(client, "bad_file", "/notono/sound/find", str(tmp_path / "gone.wav"), needle="no file")
    expect_error(client, "bad_file", "/notono/sound/find", "relative.wav", needle="absolute")


def test_renders_go_into_the_clients_live_project(client, daemon, sound, tmp_path):
    project = tmp_path / "My Song Project"
    project.mkdir()
    (project / "My Song.als").write_bytes(b"a saved Live set")
    reply = client.request("/notono/output/project", str(project / "My Song.als"))
    assert reply.ok, reply.error
    folder = (project / "Samples" / "NOTONO").resolve()
    assert reply.of("/notono/output/folder")[0][0] == str(folder)
    assert not (project / "Samples").exists(), "a set that never gets a render gets no folder either"
    try:
        mine = client.request("/notono/region/randomize", sound["sound"], "top", 2, 1, 1, 1, 8).sounds[0]
        assert Path(mine["wav"]).parent == folder and Path(mine["png"]).parent == folder
        check_files(mine)
        # another device's renders stay where they were
        with NotonoClient(daemon.host, daemon.port, timeout=120.0) as other:
            other.connect(sample_rate=SR)
            theirs = other.request("/notono/region/randomize", sound["sound"], "top", 3, 1, 1, 1, 9)
            assert theirs.ok, theirs.error
            assert Path(theirs.sounds[0]["wav"]).parent != folder
            other.request("/notono/bye")
        expect_error(client, "bad_file", "/notono/output/project", str(project / "Other.als"), needle="save the set")
        expect_error(client, "forbidden_path", "/notono/output/project", str(project / "My Song.txt"),
                     needle="not a Live set")
        expect_error(client, "forbidden_path", "/notono/output/project", "My Song.als", needle="absolute")
        # a project whose Samples folder is a link that leads elsewhere is refused, and a refused
        # request leaves none in use: renders go back to the daemon's folder, not the last project
        linked = tmp_path / "Linked Project"
        linked.mkdir()
        (linked / "Linked.als").write_bytes(b"a saved Live set")
        (tmp_path / "elsewhere").mkdir()
        (linked / "Samples").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
        expect_error(client, "forbidden_path", "/notono/output/project", str(linked / "Linked.als"), needle="is a link")
        again = client.request("/notono/region/randomize", sound["sound"], "top", 2, 2, 1, 1, 10).sounds[0]
        assert Path(again["wav"]).parent != folder and not (tmp_path / "elsewhere" / "NOTONO").exists()
        assert client.request("/notono/output/project", str(project / "My Song.als")).ok
        again = client.request("/notono/region/randomize", sound["sound"], "top", 2, 2, 1, 1, 12).sounds[0]
        assert Path(again["wav"]).parent == folder
    finally:
        back = client.request("/notono/output/project", "")
        assert back.ok and Path(back.of("/notono/output/folder")[0][0]) != folder
    assert Path(client.request("/notono/region/randomize", sound["sound"], "top", 2, 3, 1, 1, 11)
                .sounds[0]["wav"]).parent != folder


def test_sample_pack_makes_one_new_sound_per_pitch(client, sound):
    """The pack's pitch accuracy and levels are tests/test_renders.py's; here the replies' shape."""
    reply = client.request("/notono/pack", sound["sound"], 48, 52, 4, 1)
    assert reply.ok, reply.error
    pack = reply.sounds
    assert [s["pitch"] for s in pack] == [48, 52] and reply.final[1][1] == 2
    assert any(a[1].startswith("pitch 52") for a in reply.of("/notono/progress"))
    notices = reply.of("/notono/notice")
    for s in pack:
        assert s["operation"] == "pack" and s["sound"] != sound["sound"]
        assert [s["sound"], s["version"], "transposed"] in [n[:3] for n in notices]
        check_files(s)


def test_output_folder_and_sample_rate(client, daemon):
    samples = daemon.root / "live-project" / "Samples"
    try:
        reply = client.request("/notono/output/folder", str(samples / "NOTONO"))
        assert reply.ok and reply.of("/notono/output/folder")[0][0] == str((samples / "NOTONO").resolve())
        assert client.hello(48_000).final[1][6] == 48_000
        made = client.request("/notono/generate", 55, "string", 1.0, 0.8, 1, 2).sounds[0]
        assert Path(made["wav"]).parent == (samples / "NOTONO").resolve()
        check_files(made, 48_000)
        # another client's hello sets its own rate, not this client's
        with NotonoClient(daemon.host, daemon.port, timeout=120.0) as other:
            assert other.connect(sample_rate=22_050).final[1][6] == 22_050
            theirs = other.request("/notono/region/randomize", made["sound"], "top", 0, 0, 1, 1, 5)
            assert theirs.ok, theirs.error
            check_files(theirs.sounds[0], 22_050)
            other.request("/notono/bye")
        mine = client.request("/notono/region/randomize", made["sound"], "top", 1, 0, 1, 1, 6)
        assert mine.ok, mine.error
        check_files(mine.sounds[0], 48_000)
        expect_error(client, "forbidden_path", "/notono/output/folder", "/", needle="outside the allowed")
        expect_error(client, "forbidden_path", "/notono/output/folder", "relative/folder", needle="absolute")
        expect_error(client, "forbidden_path", "/notono/output/folder",
                     str(samples / ".." / ".." / ".." / "escape"), needle="outside")
    finally:   # later tests expect the default folder and rate
        assert client.request("/notono/output/folder", "").ok
        client.hello(SR)


def test_preview_and_midi_answer_clearly(client, sound):
    reply = client.request("/notono/preview", sound["sound"], 0, timeout=30.0)
    assert reply.ok or reply.error[0] == "preview_unavailable", reply.error
    for address, args in (("/notono/midi/learn", ["pitch"]), ("/notono/midi/cancel", []),
                          ("/notono/midi/mappings", [])):
        expect_error(client, "midi_unavailable", address, *args, needle="MIDI")


def test_send_command_prints_replies(daemon, sound, capsys):
    from notono_live.cli import main

    port = ["--port", str(daemon.port)]
    assert main(["send", *port, "codemap-set", "--sound", str(sound["sound"]), "--layer", "bottom",
                 "--cells", "0,0,1", "63,7,2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].split()[0] == "/notono/done" and any(l.startswith("/notono/sound ") for l in lines)
    assert main(["send", *port, "--json", "sound-get", "--sound", str(sound["sound"])]) == 0
    assert '"address": "/notono/sound"' in capsys.readouterr().out
    assert main(["send", *port, "generate", "--pitch", "99", "--family", "organ"]) == 1
    assert "pitch 99" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["send", *port, "codemap-set", "--sound", "1", "--layer", "top", "--cells", "1,2"])


# --- bad input ---------------------------------------------------------------------------------

BAD_REQUESTS = [
    ("unknown_address", "/notono/explode", [], "/notono/explode"),
    ("bad_request", "/notono/generate", ["60", "organ"], "pitch"),
    ("bad_request", "/notono/generate", [60.0, "organ"], "pitch"),
    ("bad_request", "/notono/generate", [60], "family"),
    ("bad_request", "/notono/ping", [1, 2, 3], "extra"),
    ("bad_request", "/notono/codemap/set", [1, "top", 0, 0], "whole groups"),
    ("bad_value", "/notono/generate", [100, "organ"], "pitch 100"),
    ("bad_value", "/notono/generate", [23, "organ"], "pitch 23"),
    ("bad_value", "/notono/generate", [60, "kazoo"], "kazoo"),
    ("bad_value", "/notono/generate", [60, "organ", 0.0], "temperature"),
    ("bad_value", "/notono/generate", [60, "organ", 1.0, 1.5], "top_p"),
    ("bad_value", "/notono/generate", [60, "organ", 1.0, 0.8, 0], "variations"),
    ("bad_value", "/notono/generate", [60, "organ", 1.0, 0.8, 1, -7], "seed"),
    ("bad_value", "/notono/generate", [60, "organ", 1.0, 0.8, 1, -1, 0, 10.5], "guidance 10.5"),
    ("bad_value", "/notono/generate", [60, "organ", 1.0, 0.8, 1, -1, 0, -2.0], "guidance -2"),
    ("bad_value", "/notono/hello", [0], "reply_port"),
    ("bad_value", "/notono/hello", [9000, 5], "sample rate"),
    ("not_found", "/notono/inpaint/region", [9999, "top", 0, 0, 1, 1], "9999"),
    ("not_found", "/notono/sound/get", [9999], "9999"),
    ("not_found", "/notono/codemap/get", [1, 999], "999"),
    ("not_found", "/notono/preview", [9999], "9999"),
]


@pytest.mark.parametrize("code,address,args,needle", BAD_REQUESTS, ids=[f"{a}-{i}" for i, (_, a, *_r) in
                                                                     enumerate(BAD_REQUESTS)])
def test_bad_requests_get_a_clear_error(client, sound, code, address, args, needle):
    expect_error(client, code, address, *args, needle=needle)


def test_bad_values_on_a_real_sound(client, sound, daemon, tmp_path, rendered_wav):
    sid = sound["sound"]
    expect_error(client, "bad_value", "/notono/inpaint/region", sid, "top", 30, 0, 4, 1, needle="outside the top map")
    expect_error(client, "bad_value", "/notono/inpaint/region", sid, "middle", 0, 0, 1, 1, needle="middle")
    expect_error(client, "bad_value", "/notono/inpaint/region", sid, "top", 0, 0, 0, 1, needle="at least 1")
    expect_error(client, "bad_value", "/notono/inpaint/region", sid, "top", 0, 0, 1, 1, 90, needle="pitch 90")
    expect_error(client, "bad_value", "/notono/inpaint/region", sid, "top", 0, 0, 1, 1, -1, "", 1.0, 0.8, -1,
                 11.0, needle="guidance 11")
    expect_error(client, "bad_value", "/notono/bottom/regenerate", sid, -1, "", 1.0, 0.8, -1, -0.5,
                 needle="guidance -0.5")
    expect_error(client, "bad_value", "/notono/inpaint/cells", sid, "bottom", -1, "", 1.0, 0.8, -1, 64, 0,
                 needle="outside the bottom map")
    expect_error(client, "bad_value", "/notono/inpaint/cells", sid, "bottom", -1, "", 1.0, 0.8, -1, needle="no cells")
    expect_error(client, "bad_value", "/notono/codemap/set", sid, "top", 0, 0, 512, needle="code 512")
    expect_error(client, "bad_value", "/notono/region/erase", sid, "top", 0, 0, 1, 1, -3.0, needle="amount_db")
    expect_error(client, "bad_value", "/notono/pack", sid, 60, 50, needle="below")
    expect_error(client, "bad_value", "/notono/pack", sid, 20, 50, needle="pitch 20")
    expect_error(client, "not_found", "/notono/sound/checkout", sid, 999, needle="999")
    fresh = client.request("/notono/encode", str(rendered_wav), 50, "bass").sounds[0]["sound"]
    expect_error(client, "not_found", "/notono/sound/undo", fresh, needle="nothing to undo")
    expect_error(client, "not_found", "/notono/sound/redo", fresh, needle="nothing to redo")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 100)
    expect_error(client, "bad_file", "/notono/encode", str(text), needle="notes.wav")
    expect_error(client, "bad_file", "/notono/encode", str(tmp_path / "missing.wav"), needle="missing.wav")
    expect_error(client, "bad_file", "/notono/encode", str(tmp_path), needle=str(tmp_path.name))
    expect_error(client, "bad_file", "/notono/encode", "", needle="")


def test_junk_datagrams_and_strangers(client, daemon):
    before = snapshot(daemon.data_dir)
    client.unsolicited.clear()
    client.send_raw(encode_message("/notono/ping", [1]) + b"\x00" * (p.MAX_DATAGRAM_BYTES + 1))
    client.send_raw(bytes(random.Random(0).getrandbits(8) for _ in range(300)))
    client.send_raw(b"")
    client.send_raw(b"/notono/ping\x00\x00\x00\x00,i\x00")      # truncated int argument
    client.send_raw(encode_message("/notono/ping", [-4]))
    # an OSC int64 ('h') request id: no reply could carry it, so the error names it under id -1
    client.send_raw(b"/notono/ping\x00\x00\x00\x00,h\x00\x00" + struct.pack(">q", 2 ** 40))
    # bundles nested deeper than the server allows, and a bundle holding an element that is neither
    inner = encode_message("/notono/ping", [5])
    nested = b"#bundle\x00" + bytes(8) + struct.pack(">i", len(inner)) + inner
    for _ in range(12):
        nested = b"#bundle\x00" + bytes(8) + struct.pack(">i", len(nested)) + nested
    client.send_raw(nested)
    client.send_raw(b"#bundle\x00" + bytes(8) + struct.pack(">i", 8) + b"junkjunk")
    # a bundle carrying two pings: both answered, the timetag ignored (no sleeping until 2100)
    bundle = b"#bundle\x00" + struct.pack(">Q", (200 << 32)) + b"".join(
        struct.pack(">i", len(m)) + m for m in (encode_message("/notono/ping", [90001]),
                                               encode_message("/notono/ping", [90002])))
    client.send_raw(bundle)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len([m for m in client.unsolicited
                                               if m[0] in ("/notono/error", "/notono/pong")]) < 10:
        time.sleep(0.05)
    time.sleep(0.2)   # anything unexpected would arrive by now
    errors = [args for addr, args in client.unsolicited if addr == "/notono/error"]
    assert sorted(args[1] for args in errors) == ["bad_request", "bad_request", "malformed", "malformed",
                                                  "malformed", "malformed", "malformed", "oversized"], errors
    assert any(args[0] == p.DAEMON_REQUEST_ID and "32-bit" in args[2] for args in errors), errors
    assert any("nested more than" in args[2] for args in errors), errors
    assert sorted(args[0] for addr, args in client.unsolicited if addr == "/notono/pong") == [90001, 90002]
    # a sender that never said hello gets nothing back, and the daemon says why in its log
    with NotonoClient(daemon.host, daemon.port, timeout=1.0) as stranger:
        with pytest.raises(TimeoutError):
            stranger.request("/notono/ping", timeout=1.0)
    assert "has not said /notono/hello" in daemon.log_text()
    # a first hello with a bad argument is answered on the reply port it names
    with NotonoClient(daemon.host, daemon.port, timeout=5.0) as newcomer:
        reply = newcomer.request("/notono/hello", newcomer.reply_port, 5, "newcomer")
        assert reply.error is not None and reply.error[0] == "bad_value" and "sample rate 5" in reply.error[1]
        reply = newcomer.request("/notono/hello", newcomer.reply_port, 44100.0, "newcomer")   # a float rate
        assert reply.error is not None and reply.error[0] == "bad_request" and "sample_rate" in reply.error[1]
    assert daemon.alive() and client.request("/notono/ping").final[0] == "/notono/pong"
    after = snapshot(daemon.data_dir)
    assert all(after.get(k) == v for k, v in before.items())


def test_coalescing_drops_waiting_duplicates(client, sound):
    sid = sound["sound"]
    blocker = client.send("/notono/generate", 60, "organ", 1.0, 0.8, 1, 3)
    ids = [client.send("/notono/inpaint/region", sid, "top", 10, 1, 2, 2, -1, "", 1.0, 0.8, i) for i in range(4)]
    replies = [client.wait(i, 300) for i in ids]
    assert client.wait(blocker, 300).ok
    outcomes = [r.error[0] if r.error else "ok" for r in replies]
    assert outcomes[-1] == "ok" and "superseded" in outcomes, outcomes
    assert set(outcomes) <= {"ok", "superseded"}


# --- fuzz and flood ----------------------------------------------------------------------------

def test_fuzz_never_kills_the_daemon(client, daemon, sound):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    before = snapshot(daemon.data_dir)
    ints = st.one_of(st.integers(-1000, 1000), st.sampled_from([-2**31, 2**31 - 1, -1, 0, sound["sound"], 511, 512]))
    floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.sampled_from([0.0, 0.8, -1.0]))
    texts = st.one_of(st.text(max_size=30), st.sampled_from(
        ["top", "bottom", "", "/", "../..", "/tmp", "organ", "kazoo", "pitch", "generate"] + list(FAMILIES)))
    by_type = {int: ints, float: floats, str: texts}
    anything = st.one_of(ints, floats, texts)
    specs = [m for m in p.REQUESTS.values() if m.address not in ("/notono/hello", "/notono/bye")]

    @st.composite
    def well_typed(draw):
        # the right number and types of arguments with wild values, then sometimes one mutation
        spec = draw(st.sampled_from(specs))
        values = [draw(by_type[a.type]) for a in spec.args]
        for _ in range(draw(st.integers(0, 3)) if spec.repeated else 0):
            values += [draw(by_type[a.type]) for a in spec.repeated]
        mutation = draw(st.sampled_from(["none", "none", "drop", "extra", "retype"]))
        if mutation == "drop" and values:
            values.pop(draw(st.integers(0, len(values) - 1)))
        elif mutation == "extra":
            values.append(draw(anything))
        elif mutation == "retype" and values:
            values[draw(st.integers(0, len(values) - 1))] = draw(anything)
        return spec.address, [draw(st.integers(0, 2**31 - 1))] + values

    junk_address = st.sampled_from(["/notono", "/notono/", "/other", "/notono/sound/list/x", "/", "/notono/hello/x"])
    message = st.one_of(well_typed(), st.tuples(junk_address, st.lists(anything, max_size=6)),
                        st.tuples(st.sampled_from([s.address for s in specs]), st.lists(anything, max_size=14)))
    raw = st.binary(max_size=400)
    fuzzer = NotonoClient(daemon.host, daemon.port, timeout=5.0)
    fuzzer.connect()
    sent = [0]

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.one_of(message, raw), min_size=1, max_size=12))
    def run(batch):
        for item in batch:
            if isinstance(item, bytes):
                fuzzer.send_raw(item)
            else:
                address, values = item
                try:
                    data = encode_message(address, values)
                except Exception:
                    continue
                fuzzer.send_raw(data)
            sent[0] += 1
        time.sleep(0.002)   # UDP has no flow control; stay within the daemon's socket buffer

    try:
        run()
    finally:
        fuzzer.close()
    assert sent[0] >= 1000
    assert daemon.alive(), daemon.log_text()[-3000:]
    assert client.request("/notono/ping", timeout=30).final[0] == "/notono/pong"
    after = snapshot(daemon.data_dir)
    missing = [k for k, v in before.items() if after.get(k) != v]
    assert not missing, f"files changed or lost: {missing[:3]}"
    for path in after:
        if path.endswith(".wav"):
            assert sf.info(path).frames > 0


def test_flood_gets_a_final_reply_for_every_request(client, daemon, sound):
    sid = sound["sound"]
    rss_before = daemon.memory()
    rng = random.Random(1)
    ids, pings = [], []
    for i in range(1000):
        if i % 10 == 0:
            pings.append(client.send("/notono/ping"))
        elif i % 3 == 0:   # resampling requests for one sound coalesce...
            ids.append(client.send("/notono/inpaint/region", sid, rng.choice(["top", "bottom"]), rng.randrange(8),
                                   rng.randrange(4), 1, 1, -1, "", 1.0, 0.8, i))
        else:              # ...randomize strokes do not, so the bounded queue fills up
            ids.append(client.send("/notono/region/randomize", sid, "bottom", rng.randrange(64), rng.randrange(8),
                                   1, 1, i))
        if i % 20 == 0:
            time.sleep(0.002)
    outcomes: dict[str, int] = {}
    for rid in ids:
        reply = client.wait(rid, 600)
        key = "ok" if reply.ok else reply.error[0]
        outcomes[key] = outcomes.get(key, 0) + 1
    for rid in pings:
        assert client.wait(rid, 30).final[0] == "/notono/pong"
    assert set(outcomes) <= {"ok", "busy", "superseded"}, outcomes
    assert outcomes.get("busy", 0) > 0 and outcomes.get("ok", 0) > 0, outcomes
    rss_after = daemon.memory()
    if rss_before and rss_after:
        assert rss_after[0] - rss_before[0] < 300 * 2**20, (rss_before, rss_after)
