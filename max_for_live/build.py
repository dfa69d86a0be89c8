"""Build `max_for_live/NOTONO Live.amxd` from text: this script is the device's patch source.

The patch is declared here box by box (Max class, text, inlets, outlets, rectangles, Live
parameter attributes, info texts) and wired with patchlines; the logic lives in `notono.js` (state,
OSC, Live API) and the grid in `notono_grid.js` (jsui). The device is written frozen: its scripts
are embedded in the `.amxd` (see amxd.py), so it loads wherever Live's Collect All and Save or a
move puts it. The output is deterministic, so a test rebuilds it and compares it with the committed
file byte for byte.

    python max_for_live/build.py            # write the device
    python max_for_live/build.py --check    # exit 1 if the committed device is stale
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import amxd  # noqa: E402  (sibling module; this folder is not a package)
from notono_live.constants import (  # noqa: E402
    DEFAULT_OSC_HOST, DEFAULT_OSC_PORT, DEFAULT_REPLY_PORT, FAMILIES, PITCH_MAX, PITCH_MIN,
    BOTTOM_SHAPE, TOP_SHAPE,
)

DEVICE_NAME = "NOTONO Live.amxd"
DEVICE_PATH = HERE / DEVICE_NAME
SCRIPTS = ("notono.js", "notono_grid.js", "notono_daemon.js")   # embedded in the frozen device
# The date every embedded file carries (2026-01-01 00:00 UTC): fixed, so a build is reproducible.
FROZEN_DATE = 1_767_225_600
AMXD_TYPE_AUDIO = int.from_bytes(b"aaaa", "big")   # the project block's amxdtype for an audio effect
DEVICE_TYPE = "aaaa"            # an audio effect: it sits on the audio track that gets the clips
DEVICE_WIDTH = 660.0
DEVICE_HEIGHT = 169.0           # Live's device view height in pixels
JS_INLETS, JS_OUTLETS = 2, 4    # must match `inlets` / `outlets` in notono.js (a test checks)
# What the script's view outlet addresses (through [route]): displays, and "state", the one parameter
# it writes (the Stored Only blob that keeps the current sound with the set).
VIEW_KEYS = ("status", "file", "grid", "region", "state")
STATE_NAME = "NOTONO State"
STATUS_RECT = (212.0, 132.0, 444.0, 16.0)   # presentation rects of the two text lines
FILE_RECT = (212.0, 150.0, 444.0, 16.0)
STATUS_FONT_SIZE = 9.5

# live.numbox / live.dial unit styles and parameter types, as Max numbers them.
UNIT_INT, UNIT_FLOAT, UNIT_MIDI_NOTE = 0, 1, 8
TYPE_FLOAT, TYPE_INT, TYPE_ENUM, TYPE_BLOB, TYPE_FILE = 0, 1, 2, 3, 4   # FILE: what live.drop holds
VISIBLE, STORED_ONLY, HIDDEN = 0, 1, 2   # parameter_invisible: automatable; saved with the set only; neither


@dataclass
class Patch:
    """A patcher under construction: boxes with sequential ids, and patchlines between them.

    Args:
        boxes: box dictionaries in creation order.
        lines: patchline dictionaries.
    """

    boxes: list[dict] = field(default_factory=list)
    lines: list[dict] = field(default_factory=list)

    def add(self, maxclass: str, rect: tuple[float, float, float, float], *, inlets: int, outlets: list[str],
            text: str | None = None, presentation: tuple[float, float, float, float] | None = None,
            **attributes) -> str:
        box_id = f"obj-{len(self.boxes) + 1}"
        box: dict = {"id": box_id, "maxclass": maxclass, "numinlets": inlets, "numoutlets": len(outlets)}
        if outlets:
            box["outlettype"] = list(outlets)
        box["patching_rect"] = [float(v) for v in rect]
        if text is not None:
            box["text"] = text
        if presentation is not None:
            box["presentation"] = 1
            box["presentation_rect"] = [float(v) for v in presentation]
        box.update(attributes)
        self.boxes.append({"box": dict(sorted(box.items()))})
        return box_id

    def obj(self, text: str, rect, *, inlets: int, outlets: list[str]) -> str:
        return self.add("newobj", rect, inlets=inlets, outlets=outlets, text=text)

    def connect(self, source: str, outlet: int, destination: str, inlet: int) -> None:
        self.lines.append({"patchline": {"destination": [destination, inlet], "source": [source, outlet]}})


def parameter(longname: str, shortname: str, ptype: int, *, info: str, mmin: float | None = None,
              mmax: float | None = None, initial: float | None = None, enum: list[str] | None = None,
              unitstyle: int | None = None, visibility: int = VISIBLE) -> dict:
    """The attributes that make a live.* object a Live parameter recalled by its long name, with
    `info` as the text Live's Info View shows when the mouse is over it."""
    if ptype == TYPE_INT and (mmin is not None and mmin < 0 or mmax is not None and mmax > 255):
        # Live's Int type holds 0-255 only; wider integers are Float with the Int unit style
        raise ValueError(f"{longname}: an Int parameter holds 0-255, not {mmin}-{mmax}; use TYPE_FLOAT "
                         "with unitstyle=UNIT_INT")
    valueof: dict = {"parameter_longname": longname, "parameter_shortname": shortname, "parameter_type": ptype,
                     "parameter_annotation_name": longname}
    if enum is not None:
        valueof["parameter_enum"] = list(enum)
        valueof["parameter_mmax"] = len(enum) - 1
    if mmin is not None:
        valueof["parameter_mmin"] = mmin
    if mmax is not None:
        valueof["parameter_mmax"] = mmax
    if initial is not None:
        valueof["parameter_initial_enable"] = 1
        valueof["parameter_initial"] = [initial]
    if unitstyle is not None:
        valueof["parameter_unitstyle"] = unitstyle
    if visibility:
        valueof["parameter_invisible"] = visibility
    return {"parameter_enable": 1, "varname": longname, "annotation_name": longname, "annotation": info,
            "saved_attribute_attributes": {"valueof": dict(sorted(valueof.items()))}}


def is_parameter(box: dict) -> bool:
    """A Live parameter: a live.* object, or a text object (pattr) with parameter mode on."""
    return (box.get("parameter_enable") or box.get("saved_object_attributes", {}).get("parameter_enable")) == 1


def device_patcher() -> dict:
    """The whole patcher document of the device."""
    p = Patch()

    # Audio passes through untouched: the device only needs to live on an audio track.
    plugin = p.obj("plugin~", (20, 20, 60, 22), inlets=2, outlets=["signal", "signal"])
    plugout = p.obj("plugout~", (20, 80, 60, 22), inlets=2, outlets=["signal", "signal"])
    p.connect(plugin, 0, plugout, 0)
    p.connect(plugin, 1, plugout, 1)

    # The brain, its OSC link, and the view router.
    brain = p.add("newobj", (400, 420, 240, 22), inlets=JS_INLETS, outlets=[""] * JS_OUTLETS, text="js notono.js",
                  # as Max saves a js box: the script it loads, which freezing embeds
                  saved_object_attributes={"filename": "notono.js", "parameter_enable": 0})
    receiver = p.obj(f"udpreceive {DEFAULT_REPLY_PORT} @defer 1", (660, 360, 150, 22), inlets=1, outlets=[""])
    sender = p.obj(f"udpsend {DEFAULT_OSC_HOST} {DEFAULT_OSC_PORT}", (400, 480, 150, 22), inlets=1, outlets=[])
    p.connect(receiver, 0, brain, 1)
    p.connect(brain, 0, sender, 0)
    p.connect(brain, 1, receiver, 0)
    # The script writes to displays (comments and the grid) and to one parameter, "NOTONO State", never
    # to a parameter the user sets: a write into an automatable parameter from inside the device lands
    # in Live's undo history and fights automation (Ableton's production guidelines, "Undo History").
    view_keys = list(VIEW_KEYS)
    router = p.obj("route " + " ".join(view_keys), (400, 520, 480, 22),
                   inlets=len(view_keys) + 1, outlets=[""] * (len(view_keys) + 1))
    p.connect(brain, 2, router, 0)
    # Node for Max starts a daemon when none answers (notono_daemon.js); it runs when the device loads.
    starter = p.obj("node.script notono_daemon.js @autostart 1 @watch 0", (660, 420, 280, 22), inlets=1,
                    outlets=["", ""])
    p.connect(brain, 3, starter, 0)
    p.connect(starter, 0, brain, 0)

    def from_view(key: str) -> int:
        """The router outlet that carries the script's messages for `key`."""
        return view_keys.index(key)

    ready = p.obj("live.thisdevice", (400, 300, 100, 22), inlets=1, outlets=["bang", "int", "int"])
    ready_message = p.add("message", (400, 340, 80, 22), inlets=2, outlets=[""], text="live_ready")
    p.connect(ready, 0, ready_message, 0)
    p.connect(ready_message, 0, brain, 0)

    def to_brain(source: str, selector: str, x: float, y: float = 380) -> None:
        # "prepend pitch" turns a control's value into the message notono.js handles.
        prepend = p.obj(f"prepend {selector}", (x, y, 90, 22), inlets=1, outlets=[""])
        p.connect(source, 0, prepend, 0)
        p.connect(prepend, 0, brain, 0)

    def label(text: str, presentation, x: float, y: float) -> None:
        p.add("comment", (x, y, 90, 18), inlets=1, outlets=[], text=text, presentation=presentation,
              fontsize=9.0)

    # --- The grid: spectrogram under the codemap grid, click-and-drag region selection.
    grid = p.add("jsui", (20, 600, 200, 136), inlets=1, outlets=[""], presentation=(4, 4, 200, 136),
                 filename="notono_grid.js", parameter_enable=0, border=0)
    p.connect(grid, 0, brain, 0)
    p.connect(router, from_view("grid"), grid, 0)

    # --- Mappable parameters (x of the patching rect just spreads them out).
    controls_y = 220

    layer = p.add("live.tab", (240, controls_y, 100, 18), inlets=1, outlets=["", "", "float"],
                  presentation=(4, 146, 200, 17), num_lines_patching=1, num_lines_presentation=1,
                  **parameter("Layer", "Layer", TYPE_ENUM, enum=["top", "bottom"], initial=0,
                              info="Which codemap the grid shows and the region edits: top (32 x 4, "
                                   "1 s a column: pitch and envelope) or bottom (64 x 8, 0.5 s a column: timbre)."))
    to_brain(layer, "layer", 240)

    buttons = [  # long name, label, selector, presentation rect, info
        ("Generate", "Generate", "generate", (212, 4, 64, 18),
         "Draw a new 4 s sound at Pitch and Family; it lands in the next free clip slot."),
        ("Inpaint", "Inpaint region", "inpaint", (280, 4, 84, 18),
         "Regenerate the selected region of the current sound; everything outside it stays."),
        ("New Bottom", "New bottom", "new_bottom", (368, 4, 72, 18),
         "Keep the top map (pitch, envelope) and draw a new bottom map: a new timbre."),
        ("Erase", "Erase", "erase", (444, 4, 46, 18),
         "Lower the selected region by 24 dB; the daemon says the drop it reached."),
        ("Randomise", "Randomise", "randomise", (494, 4, 62, 18),
         "Replace the selected region with random codes."),
        ("Undo", "Undo", "undo", (212, 26, 44, 18), "Go back to the current sound's previous version."),
        ("Redo", "Redo", "redo", (260, 26, 44, 18), "Go forward again after Undo."),
        ("Pack", "Pack", "pack", (492, 48, 62, 16),
         "Render the current sound at every semitone of two octaves around its pitch, laid out as a Drum "
         "Rack on a new MIDI track (Live 12.4 and later) or as clips named by note."),
    ]
    for i, (longname, text, selector, rect, info) in enumerate(buttons):
        x = 20 + i * 100
        button = p.add("live.text", (x, 140, 80, 18), inlets=1, outlets=["", ""], presentation=rect,
                       mode=0, text=text, texton=text,
                       **parameter(longname, longname, TYPE_ENUM, enum=["off", "on"], info=info))
        to_brain(button, selector, x, y=170)

    label("Variations", (310, 28, 52, 14), 360, controls_y - 20)
    variations = p.add("live.numbox", (360, controls_y, 44, 18), inlets=1, outlets=["", "float"],
                       presentation=(364, 26, 36, 18),
                       **parameter("Variations", "Variations", TYPE_INT, mmin=1, mmax=16, initial=1,
                                   unitstyle=UNIT_INT, info="How many sounds one press of Generate makes (1-16)."))
    to_brain(variations, "variations", 360)

    target = p.add("live.tab", (460, controls_y, 150, 18), inlets=1, outlets=["", "", "float"],
                   presentation=(406, 26, 150, 18), num_lines_patching=1, num_lines_presentation=1,
                   **parameter("Target", "Target", TYPE_ENUM, enum=["selected slot", "this track"], initial=0,
                               info="Where renders land: the selected clip slot (or the next free one "
                                    "below it), or this track from the selected scene down."))
    to_brain(target, "target", 460)

    label("Pitch", (212, 50, 48, 14), 640, controls_y - 20)
    pitch = p.add("live.numbox", (640, controls_y, 48, 18), inlets=1, outlets=["", "float"],
                  presentation=(212, 64, 48, 18),
                  **parameter("Pitch", "Pitch", TYPE_INT, mmin=PITCH_MIN, mmax=PITCH_MAX, initial=60,
                              unitstyle=UNIT_MIDI_NOTE,
                              info="The pitch the next Generate, Inpaint or New bottom asks for (C0-C5)."))
    to_brain(pitch, "pitch", 640)

    label("Family", (264, 50, 96, 14), 740, controls_y - 20)
    family = p.add("live.menu", (740, controls_y, 100, 18), inlets=1, outlets=["", "", "float"],
                   presentation=(264, 64, 100, 18),
                   **parameter("Family", "Family", TYPE_ENUM, enum=[f.replace("_", " ") for f in FAMILIES],
                               initial=FAMILIES.index("keyboard"),
                               info="The instrument family the next Generate, Inpaint or New bottom asks for."))
    to_brain(family, "family", 740)

    temperature = p.add("live.dial", (860, controls_y, 48, 48), inlets=1, outlets=["", "float"],
                        presentation=(372, 46, 52, 48),
                        **parameter("Temperature", "Temp", TYPE_FLOAT, mmin=0.1, mmax=2.0, initial=1.0,
                                    unitstyle=UNIT_FLOAT,
                                    info="Sampling temperature: below 1 safer, above 1 wilder."))
    to_brain(temperature, "temperature", 860)

    # "auto" leaves the classifier-free guidance scale to the daemon; notono.js maps the index
    label("Guidance", (430, 50, 60, 14), 910, controls_y - 20)
    guidance = p.add("live.menu", (910, controls_y, 52, 18), inlets=1, outlets=["", "", "float"],
                     presentation=(430, 64, 52, 18),
                     **parameter("Guidance", "Guidance", TYPE_ENUM, enum=["auto", "1", "1.5", "2", "3", "4"],
                                 initial=0,
                                 info="Classifier-free guidance: higher holds sounds closer to Pitch and Family "
                                      "and costs about twice the time above 1; auto leaves it to the daemon."))
    to_brain(guidance, "guidance", 910, y=410)

    rows_max, cols_max = BOTTOM_SHAPE   # ranges cover both layers; notono.js clamps to the layer shown
    region = [  # long name, label, selector, range, initial, presentation x, info
        ("Region X", "X (time)", "region_x", (0, cols_max - 1), 0, 212, "First column of the region (time)."),
        ("Region Y", "Y (freq)", "region_y", (0, rows_max - 1), 0, 256, "Lowest row of the region (frequency)."),
        ("Region Width", "Width", "region_width", (1, cols_max), 1, 300, "Columns the region spans."),
        ("Region Height", "Height", "region_height", (1, rows_max), 1, 344, "Rows the region spans."),
    ]
    for i, (longname, text, selector, (low, high), initial, x, info) in enumerate(region):
        px = 960 + i * 100
        label(text, (x, 96, 44, 14), px, controls_y - 20)
        box = p.add("live.numbox", (px, controls_y, 44, 18), inlets=1, outlets=["", "float"],
                    presentation=(x, 110, 40, 18),
                    **parameter(longname, longname.replace("Region ", ""), TYPE_INT, mmin=low, mmax=high,
                                initial=initial, unitstyle=UNIT_INT,
                                info=info + " A drag on the grid also sets the region; the label beside "
                                            "these boxes shows the one in use."))
        to_brain(box, selector, px)
    # The region in use, in words: a knob moves it, a drag on the grid replaces it.
    region_label = p.add("comment", (960, controls_y + 30, 200, 18), inlets=1, outlets=[],
                         presentation=(388, 104, 170, 28), fontsize=9.0, varname="region", linecount=2,
                         text=f"Region: top {TOP_SHAPE[0]}x{TOP_SHAPE[1]}, bottom {BOTTOM_SHAPE[0]}x{BOTTOM_SHAPE[1]}")
    p.connect(router, from_view("region"), region_label, 0)

    warp = p.add("live.menu", (1300, controls_y, 70, 18), inlets=1, outlets=["", "", "float"],
                 presentation=(492, 68, 62, 16),
                 **parameter("Warp", "Warp", TYPE_ENUM, enum=["no warp", "1 bar", "2 bars", "4 bars", "8 bars", "16 bars"],
                             initial=0, info="Off: renders are one-shots (warping off). Otherwise each new clip is "
                                             "warped to the set's tempo, its 4 s lasting this many bars."))
    to_brain(warp, "warp_bars", 1300)

    # The current sound, saved with the set (Stored Only): restored before live.thisdevice, and again
    # when Live's Undo steps it back. Written by the script through the router's "state" outlet.
    # (a text object keeps parameter_enable among its saved object attributes, as Max saves a pattr)
    state_attributes = parameter(STATE_NAME, "State", TYPE_BLOB, visibility=STORED_ONLY,
                                 info="The current sound and version, kept with the set so it comes back "
                                      "when the set is opened again.")
    del state_attributes["parameter_enable"]
    state = p.add("newobj", (1180, 300, 160, 22), inlets=1, outlets=["", "", ""], text="pattr @parameter_enable 1",
                  saved_object_attributes={"parameter_enable": 1, "parameter_mappable": 0}, **state_attributes)
    p.connect(router, from_view("state"), state, 0)
    to_brain(state, "restore_state", 1180, y=340)

    drop = p.add("live.drop", (1400, controls_y, 100, 60), inlets=1, outlets=["", ""],
                  presentation=(562, 4, 94, 64), legend="Drop audio or a clip to encode",
                  # Hidden, not stored: a recalled path would re-encode the file on every set load.
                  **parameter("Drop File", "Drop", TYPE_FILE, visibility=HIDDEN,
                              info="Drop an audio file or a clip here to encode it and edit it as a sound."))
    to_brain(drop, "drop", 1400)

    # Ports are wider than Live's Int type (0-255): Float parameters shown as integers.
    label("Daemon port", (562, 70, 46, 14), 1520, controls_y - 20)
    daemon_port = p.add("live.numbox", (1520, controls_y, 50, 18), inlets=1, outlets=["", "float"],
                        presentation=(562, 84, 46, 16),
                        **parameter("Daemon Port", "Daemon Port", TYPE_FLOAT, mmin=1024, mmax=65535,
                                    initial=DEFAULT_OSC_PORT, unitstyle=UNIT_INT, visibility=STORED_ONLY,
                                    info="The UDP port notono-live serve listens on (its --port)."))
    to_brain(daemon_port, "daemon_port", 1520)
    label("Reply port", (610, 70, 46, 14), 1620, controls_y - 20)
    reply_port = p.add("live.numbox", (1620, controls_y, 50, 18), inlets=1, outlets=["", "float"],
                       presentation=(610, 84, 46, 16),
                       **parameter("Reply Port", "Reply Port", TYPE_FLOAT, mmin=0, mmax=65535,
                                   initial=0, unitstyle=UNIT_INT, visibility=STORED_ONLY,
                                   info="The UDP port this device receives the daemon's replies on; 0 (the "
                                        "default) picks a free one, so several devices need no setting."))
    to_brain(reply_port, "reply_port", 1620)
    starting = [  # long name, label, selector, presentation rect, initial, info
        ("Start Daemon", "Auto start", "start_daemon", (562, 104, 46, 16), 1,
         "When no daemon answers, start notono-live serve (found on PATH or where pip and pipx put it)."),
        ("Keep Daemon", "Keep", "keep_daemon", (610, 104, 46, 16), 0,
         "Keep a daemon this device started running after the last device closes."),
    ]
    for i, (longname, text, selector, rect, initial, info) in enumerate(starting):
        x = 1720 + i * 100
        toggle = p.add("live.text", (x, controls_y, 60, 16), inlets=1, outlets=["", ""], presentation=rect,
                       mode=1, text=text, texton=text, fontsize=8.0,
                       **parameter(longname, longname, TYPE_ENUM, enum=["off", "on"], initial=initial,
                                   visibility=STORED_ONLY, info=info))
        to_brain(toggle, selector, x)

    # --- Status line (connection, progress, the last error) and, below it, the current file.
    status = p.add("comment", (400, 580, 440, 18), inlets=1, outlets=[], presentation=STATUS_RECT,
                   text="Waiting for Live...", fontsize=STATUS_FONT_SIZE, varname="status")
    p.connect(router, from_view("status"), status, 0)
    file_line = p.add("comment", (400, 600, 440, 18), inlets=1, outlets=[], presentation=FILE_RECT,
                      text="", fontsize=STATUS_FONT_SIZE, varname="file")
    p.connect(router, from_view("file"), file_line, 0)

    parameters = {b["box"]["id"]: [b["box"]["varname"], b["box"]["saved_attribute_attributes"]["valueof"]
                                   ["parameter_shortname"], 0]
                  for b in p.boxes if is_parameter(b["box"])}
    parameters["inherited_shortname"] = 1
    return {"patcher": {
        "fileversion": 1,
        "appversion": {"major": 8, "minor": 6, "revision": 0, "architecture": "x64", "modernui": 1},
        "classnamespace": "box",
        "rect": [80.0, 80.0, 1760.0, 640.0],
        "openrect": [0.0, 0.0, DEVICE_WIDTH, DEVICE_HEIGHT],
        "openinpresentation": 1,
        "default_fontsize": 10.0,
        "default_fontface": 0,
        "default_fontname": "Arial Bold",
        "gridonopen": 1,
        "gridsize": [8.0, 8.0],
        "devicewidth": DEVICE_WIDTH,
        "description": "NOTONO Live: generate and inpaint instrument sounds; every render lands in a clip slot.",
        "digest": "Talks to `notono-live serve` over OSC on 127.0.0.1",
        "tags": "notono generative sampler",
        "boxes": p.boxes,
        "lines": p.lines,
        "parameters": parameters,
        "dependency_cache": [{"name": name, "type": "TEXT", "implicit": 1} for name in SCRIPTS],
        "latency": 0,
        "is_mpe": 0,
        "minimum_live_version": "",
        "minimum_max_version": "",
        "platform_compatibility": 0,
        "project": project_block(),
        "autosave": 0,
    }}


def project_block() -> dict:
    """The `project` dictionary a device saved by Max carries: its type and its embedded scripts."""
    date = FROZEN_DATE + amxd.HFS_EPOCH_OFFSET
    return {
        "version": 1, "creationdate": date, "modificationdate": date, "viewrect": [25.0, 106.0, 300.0, 500.0],
        "autoorganize": 1, "hideprojectwindow": 1, "showdependencies": 1, "autolocalize": 0,
        "contents": {"patchers": {}, "media": {}, "code": {name: {"kind": "javascript", "local": 1} for name in SCRIPTS},
                     "data": {}, "other": {}},
        "layout": {}, "searchpath": {}, "detailsvisible": 0, "amxdtype": AMXD_TYPE_AUDIO, "readonly": 0,
        "devpathtype": 0, "devpath": ".", "sortmode": 0, "viewmode": 0, "includepackages": 0,
    }


def build() -> bytes:
    """The bytes of the frozen device file: the patch with its three scripts embedded."""
    scripts = [amxd.Embedded(name, "TEXT", (HERE / name).read_bytes()) for name in SCRIPTS]
    return amxd.pack_frozen(DEVICE_TYPE, DEVICE_NAME, device_patcher(), scripts, FROZEN_DATE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed device instead of writing")
    parser.add_argument("--output", type=Path, default=DEVICE_PATH, help="where to write the device")
    args = parser.parse_args(argv)
    data = build()
    if args.check:
        current = args.output.read_bytes() if args.output.exists() else b""
        if current != data:
            print(f"{args.output} is stale: run `python max_for_live/build.py`", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date ({len(data)} bytes)")
        return 0
    tmp = args.output.with_name(args.output.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(args.output)    # never leave a half-written device behind
    print(f"wrote {args.output} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
