// NOTONO Live: the device's brain (classic Max `js` object, ES5).
//
// It owns the device state (pitch, family, temperature, guidance, layer, region, current sound), speaks the
// daemon's OSC protocol (docs/osc.md, notono_live/osc/protocol.py) through [udpsend] and
// [udpreceive], keeps a heartbeat, and turns every rendered /notono/sound reply into an audio clip
// through the Live API: ClipSlot.create_audio_clip(path) in the target slot, never over an
// existing clip, then name, colour per family, warping off, looping off.
//
// Inlet 0: messages from the device view ("pitch 60", "generate 1", "region 0 3 2 4", "drop <path>",
//          "live_ready" from [live.thisdevice]).
// Inlet 1: OSC from [udpreceive]: the address is the message selector, the arguments follow.
// Outlet 0: to [udpsend]: OSC messages, or "port N" / "host H" to re-aim it.
// Outlet 1: to [udpreceive]: "port N" when the reply port changes.
// Outlet 3: to [node.script notono_daemon.js]: "start <port> <keep> [executable]" when no daemon
//           answers; its replies (daemon_log, daemon_started, daemon_missing, daemon_exited) come
//           back on inlet 0.
// Outlet 2: to the view, through [route status file grid region state]: "status set <text>",
//           "file set <path>", "grid setlayer top", "region set <text>", and "state set <wav>
//           <sound> <version> <label>" into the one parameter the script writes, the Stored Only
//           blob "NOTONO State" ([pattr]), so the set remembers the current sound. It never writes
//           the user's parameters (Pitch, Family, Layer, Region ...): such writes land in Live's undo
//           history and fight automation. Those are what the user asks for; the status line and the
//           region label say what the current sound is.
//
// Live API rules kept here: no LiveAPI object in global code (wait for live_ready, sent by
// [live.thisdevice]); the Live set is only changed from a deferred Task, never from inside a
// notification callback or the high-priority thread.

autowatch = 0;
inlets = 2;
outlets = 4;

var OUT_OSC = 0;
var OUT_RECEIVER = 1;
var OUT_VIEW = 2;
var OUT_STARTER = 3;

// --- Constants mirrored from notono_live (the tests check they agree) -----------------------
var FAMILIES = ["bass", "brass", "flute", "guitar", "keyboard", "mallet",
                "organ", "reed", "string", "synth_lead", "vocal"];
var PITCH_MIN = 24;
var PITCH_MAX = 84;
var LAYERS = ["top", "bottom"];
var LAYER_SHAPES = { top: [32, 4], bottom: [64, 8] };     // [rows, columns]
var DEFAULT_DAEMON_HOST = "127.0.0.1";
var DEFAULT_DAEMON_PORT = 7400;
var DEFAULT_REPLY_PORT = 7401;

// Clip colours, 0x00rrggbb; Live snaps each to the nearest colour of its palette.
var FAMILY_COLOURS = {
    bass: 0x3C5AF0, brass: 0xF0B400, flute: 0x7FD4F0, guitar: 0xC8782D,
    keyboard: 0xB4B4E6, mallet: 0x00C8A0, organ: 0x9650DC, reed: 0x64B43C,
    string: 0xDC3C3C, synth_lead: 0xFF50B4, vocal: 0xFFDC64
};
var UNKNOWN_FAMILY_COLOUR = 0x969696;

// ClipSlot.create_audio_clip exists from Live 12.0.5 on.
var MIN_LIVE_VERSION = [12, 0, 5];
// Song.file_path (the saved set's file, "" while unsaved) from Live 11.3 on; older sets render into
// the daemon's folder.
var PROJECT_LIVE_VERSION = [11, 3, 0];
// A sample pack as a Drum Rack: Track.insert_device and RackDevice.insert_chain need Live 12.3,
// SimplerDevice.replace_sample 12.4. Older versions get the pack as clips named by note.
var RACK_LIVE_VERSION = [12, 4, 0];
var PACK_SPAN = 12;                  // a pack covers the sound's pitch +- 12 semitones (two octaves)
// The Warp menu: 0 leaves a render a one-shot (warping off); otherwise its length in bars.
var WARP_CHOICES = [0, 1, 2, 4, 8, 16];
var WARP_DELAY_MS = 100;             // Live turns warping on after the current event: markers come later

// Every address this device sends or understands, from notono_live/osc/protocol.py.
var ADDRESS = {
    hello: "/notono/hello",
    bye: "/notono/bye",
    ping: "/notono/ping",
    pong: "/notono/pong",
    generate: "/notono/generate",
    encode: "/notono/encode",
    inpaintRegion: "/notono/inpaint/region",
    bottomRegenerate: "/notono/bottom/regenerate",
    regionErase: "/notono/region/erase",
    regionRandomize: "/notono/region/randomize",
    undo: "/notono/sound/undo",
    redo: "/notono/sound/redo",
    find: "/notono/sound/find",
    pack: "/notono/pack",
    outputProject: "/notono/output/project",
    outputFolder: "/notono/output/folder",
    progress: "/notono/progress",
    sound: "/notono/sound",
    done: "/notono/done",
    notice: "/notono/notice",
    error: "/notono/error"
};
var DAEMON_REQUEST_ID = -1;          // renders the daemon starts itself (MIDI controller)
var CLIENT_NAME = "NOTONO Live device";
var TOP_P = 0.8;                     // the paper's nucleus mass; not on the device view
// The Guidance menu's entries: "auto" (-1) leaves the scale to the daemon (serve --guidance, else the
// model's: 2 to generate, 1 to edit); the others are classifier-free guidance scales (protocol: 0-10).
var GUIDANCE_CHOICES = [-1, 1, 1.5, 2, 3, 4];
var ERASE_DB = 24.0;                 // the protocol's default level drop for /notono/region/erase
var HEARTBEAT_MS = 2000;
var CLIP_RETRY_MS = 100;             // a new clip not found at once is looked up once more after this

// The status and file lines: 444 px comments in Arial Bold 9.5 (build.py STATUS_RECT, FILE_RECT),
// less the comment's inset. Widths of ASCII 32-126 in 1/1000 em (Arial Bold, the metrics of
// Helvetica-Bold); anything else counts as a full em, which no Latin glyph exceeds.
var LINE_WIDTH_PX = 436;
var FONT_SIZE = 9.5;
var GLYPH_WIDTHS = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611,
    975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556,
    333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611,
    611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584
];
var ELLIPSIS = "\u2026";
var MISSED_BEATS_FOR_LOSS = 3;

// Requests whose /notono/sound replies are new renders that belong in a clip slot.
// Undo and redo answer with versions that already have a clip, so they only update the view.
var PLACES_CLIPS = { generate: true, encode: true, inpaint: true, bottom: true,
                     erase: true, randomize: true };
// Requests whose final /notono/done needs no "... done." on the status line: their own replies say it.
var QUIET_DONE = { ping: true, find: true, restore: true, project: true, project_quiet: true, pack: true };

// --- State ---------------------------------------------------------------------------------
var controls = {
    pitch: 60, family: "keyboard", temperature: 1.0, guidance: -1, variations: 1,
    layer: "top", region: [0, 0, 1, 1], target: 0, warpBars: 0
};
var link = {
    host: DEFAULT_DAEMON_HOST, daemonPort: DEFAULT_DAEMON_PORT, replyPort: DEFAULT_REPLY_PORT,
    state: "idle",         // idle (before live_ready), connecting, connected, lost
    awaitingBeat: false, missedBeats: 0, daemon: "",
    autoReply: false, portAsks: 0     // Reply Port 0: waiting for notono_daemon.js to name a free port
};
// Starting a daemon when none answers: on by default ("Start Daemon"); "Keep Daemon" leaves it
// running after the last device closes; `daemon_executable <path>` names the notono-live to run.
var starter = { auto: true, keep: false, executable: "", asked: false, unanswered: 0 };
var HELLOS_BEFORE_START = 2;         // unanswered hellos (about 2 s) before a daemon is started
var FREE_PORT_TRIES = 3;             // heartbeats to wait for notono_daemon.js to name a free reply port
var nextRequestId = 1;
var pending = {};          // request id -> kind
var finding = {};          // request id of a /notono/sound/find -> the dropped file, encoded if not found
var current = { sound: 0, version: 0, png: "", wav: "", pitch: 0, family: "", label: "" };
// The current sound as the set saved it ("NOTONO State"): looked up in the daemon's history once
// connected, so the reopened set shows and edits the same sound and version.
var saved = null;          // {wav, sound, version, label}
var storedWav = "";        // the WAV "NOTONO State" holds now, so the same value is never written twice
var project = { sent: null };   // the set file last announced to the daemon ("" = none yet saved)
var packs = {};            // request id of a /notono/pack -> {renders, misses}
var liveReady = false;
var liveVersion = null;    // [major, minor, bugfix] once read
var waitingForLive = [];   // renders that arrived before live_ready
var notices = {};          // "sound:version" -> the kinds of the daemon's notices about it
var placed = {};           // "sound:version" -> "track T slot S", so a version gets one clip
var heartbeatTask = null;
var lastStatus = "";
var lastFile = "";

// --- Small pure helpers --------------------------------------------------------------------
var NOTE_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];

// Note name as Live shows it: MIDI 60 is C3.
function noteName(pitch) {
    pitch = Math.round(pitch);
    return NOTE_NAMES[((pitch % 12) + 12) % 12] + (Math.floor(pitch / 12) - 2);
}

// Fallback clip name when a reply carries no label: "organ C3 · v4".
function clipName(family, pitch, version) {
    return family.replace(/_/g, " ") + " " + noteName(pitch) + " \u00b7 v" + version;
}

function familyColour(family) {
    return FAMILY_COLOURS.hasOwnProperty(family) ? FAMILY_COLOURS[family] : UNKNOWN_FAMILY_COLOUR;
}

// Folders that only exist on the startup disk: an HFS path into them names the boot volume.
var BOOT_VOLUME_FOLDERS = /^\/(Users|Applications|Library|System|private|tmp|var|opt|usr|Volumes|Network|cores)(\/|$)/;

// Max dialogs and drops on macOS give HFS-style paths ("Macintosh HD:/Users/me/a.wav"); Live
// wants POSIX. The boot volume maps to "/", any other volume to "/Volumes/<name>". POSIX paths
// and Windows paths ("C:/...", "C:\...") pass through unchanged.
function hfsToPosix(path) {
    path = String(path);
    var match = /^([^:\/\\]+):(\/.*)?$/.exec(path);
    if (!match) {
        return path;
    }
    var volume = match[1];
    var rest = match[2] || "/";
    if (volume.length === 1) {
        return path;                     // a Windows drive letter
    }
    if (BOOT_VOLUME_FOLDERS.test(rest)) {
        return rest;
    }
    return "/Volumes/" + volume + rest;
}

function versionAtLeast(version, minimum) {
    for (var i = 0; i < minimum.length; i++) {
        var v = version[i] || 0;
        if (v !== minimum[i]) {
            return v > minimum[i];
        }
    }
    return true;
}

function clampInt(value, low, high) {
    value = Math.round(Number(value));
    if (isNaN(value)) {
        value = low;
    }
    return Math.max(low, Math.min(high, value));
}

// Keep [col, row, width, height] inside a layer's grid.
function clampRegion(region, layerName) {
    var shape = LAYER_SHAPES[layerName];
    var rows = shape[0], cols = shape[1];
    var col = clampInt(region[0], 0, cols - 1);
    var row = clampInt(region[1], 0, rows - 1);
    return [col, row, clampInt(region[2], 1, cols - col), clampInt(region[3], 1, rows - row)];
}

// The same stretch of sound on the other layer: a top cell covers 2x2 bottom cells, and a bottom
// region maps to the smallest top region that covers it.
function convertRegion(region, fromLayer, toLayer) {
    if (fromLayer === toLayer) {
        return region.slice();
    }
    if (fromLayer === "top") {
        return [region[0] * 2, region[1] * 2, region[2] * 2, region[3] * 2];
    }
    var c0 = Math.floor(region[0] / 2), r0 = Math.floor(region[1] / 2);
    var c1 = Math.ceil((region[0] + region[2]) / 2), r1 = Math.ceil((region[1] + region[3]) / 2);
    return [c0, r0, c1 - c0, r1 - r0];
}

function first(value) {
    return Array.isArray(value) ? value[0] : value;
}

// Width of a text in pixels on the status line.
function textWidth(text) {
    var units = 0;
    for (var i = 0; i < text.length; i++) {
        var code = text.charCodeAt(i);
        units += (code >= 32 && code <= 126) ? GLYPH_WIDTHS[code - 32] : 1000;
    }
    return units * FONT_SIZE / 1000;
}

// The longest start of `text` that fits the line, with an ellipsis when it was cut.
function fitEnd(text) {
    if (textWidth(text) <= LINE_WIDTH_PX) {
        return text;
    }
    var keep = text.length;
    while (keep > 0 && textWidth(text.substring(0, keep) + ELLIPSIS) > LINE_WIDTH_PX) {
        keep--;
    }
    return text.substring(0, keep) + ELLIPSIS;
}

// A path that fits the line: the start and the end (the file name) kept, the middle elided.
function fitMiddle(text) {
    if (textWidth(text) <= LINE_WIDTH_PX) {
        return text;
    }
    var head = Math.floor(text.length / 2), tail = text.length - head;
    while (head + tail > 0 && textWidth(text.substring(0, head) + ELLIPSIS +
                                        text.substring(text.length - tail)) > LINE_WIDTH_PX) {
        if (head > 8 || tail === 0) { head--; } else { tail--; }
    }
    return text.substring(0, head) + ELLIPSIS + text.substring(text.length - tail);
}

// --- View ----------------------------------------------------------------------------------
// The status line holds one line; a message cut to fit goes whole to the Max window.
function status(text) {
    text = String(text);
    lastStatus = text;
    var shown = fitEnd(text);
    if (shown !== text) {
        post("NOTONO Live: " + text + "\n");
    }
    outlet(OUT_VIEW, "status", "set", shown);
}

// The file line: where the current sound's WAV is, so a producer can find it even when Live
// could not take it (the whole path also goes to the Max window).
function showFile(path) {
    path = String(path || "");
    if (path === lastFile) {
        return;
    }
    lastFile = path;
    if (path) {
        post("NOTONO Live: file " + path + "\n");
    }
    outlet(OUT_VIEW, "file", "set", path ? fitMiddle("File: " + path) : "");
}

function span(start, count) {
    return count > 1 ? start + "-" + (start + count - 1) : String(start);
}

// The grid and the region label show the region the buttons act on; the Region parameters are
// inputs and are never written back.
function showRegion() {
    var r = controls.region;
    outlet(OUT_VIEW, "grid", "setregion", r[0], r[1], r[2], r[3]);
    outlet(OUT_VIEW, "region", "set", "Region: " + controls.layer + " col " + span(r[0], r[2]) +
           ", row " + span(r[1], r[3]));
}

function showLayer() {
    outlet(OUT_VIEW, "grid", "setlayer", controls.layer);
}

// --- Controls from the view (inlet 0) ------------------------------------------------------
function pitch(value) {
    controls.pitch = clampInt(value, PITCH_MIN, PITCH_MAX);
}

function family(index) {
    controls.family = FAMILIES[clampInt(index, 0, FAMILIES.length - 1)];
}

function temperature(value) {
    controls.temperature = Math.max(0.05, Number(value));
}

// The Guidance menu sends its index.
function guidance(index) {
    controls.guidance = GUIDANCE_CHOICES[clampInt(index, 0, GUIDANCE_CHOICES.length - 1)];
}

// A sampling request's arguments, with the guidance scale last when the menu is not on "auto"
// (the protocol's trailing guidance argument; left out, the daemon uses its default).
function withGuidance(args) {
    if (controls.guidance >= 0) { args.push(controls.guidance); }
    return args;
}

function variations(value) {
    controls.variations = clampInt(value, 1, 16);
}

function target(index) {
    controls.target = clampInt(index, 0, 1);
}

// The Warp menu sends its index: off, or the render's length in bars at the set's tempo.
function warp_bars(index) {
    controls.warpBars = WARP_CHOICES[clampInt(index, 0, WARP_CHOICES.length - 1)];
}

function layer(index) {
    var name = LAYERS[clampInt(index, 0, 1)];
    if (!liveReady) {
        // Live restores saved parameters in no fixed order before live_ready: the saved region is
        // already in the saved layer's cells, so keep both as they come and clamp once, later.
        controls.layer = name;
        return;
    }
    if (name !== controls.layer) {
        controls.region = clampRegion(convertRegion(controls.region, controls.layer, name), name);
        controls.layer = name;
    }
    showLayer();
    showRegion();     // the converted region is shown, not written into the Region parameters
}

function setRegionPart(part, value) {
    var region = controls.region.slice();
    region[part] = value;
    if (!liveReady) {
        controls.region = region;   // see layer(): clamped at live_ready
        return;
    }
    controls.region = clampRegion(region, controls.layer);
    showRegion();
}

function region_x(value) { setRegionPart(0, value); }
function region_y(value) { setRegionPart(1, value); }
function region_width(value) { setRegionPart(2, value); }
function region_height(value) { setRegionPart(3, value); }

// From the grid: a finished click-and-drag selection.
function region(col, row, width, height) {
    controls.region = clampRegion([col, row, width, height], controls.layer);
    showRegion();
}

function daemon_port(port) {
    link.daemonPort = clampInt(port, 1, 65535);
    starter.asked = false;
    outlet(OUT_OSC, "port", link.daemonPort);
    reconnect();
}

function daemon_host(host) {
    link.host = String(host);
    outlet(OUT_OSC, "host", link.host);
    reconnect();
}

// Reply Port 0 (its default) means automatic: notono_daemon.js finds a free port, so several
// devices in one set each get their own without anyone setting them.
function reply_port(port) {
    port = clampInt(port, 0, 65535);
    if (port === 0) {
        link.autoReply = true;
        link.portAsks = 0;
        if (liveReady) { askFreePort(); }
        return;
    }
    link.autoReply = false;
    setReplyPort(port);
}

function setReplyPort(port) {
    link.replyPort = port;
    outlet(OUT_RECEIVER, "port", port);
    reconnect();
}

// Ask notono_daemon.js for a free port; after FREE_PORT_TRIES unanswered asks, use the default.
function askFreePort() {
    if (link.portAsks >= FREE_PORT_TRIES) {
        link.autoReply = false;
        status("Node for Max found no free port: replies come to " + DEFAULT_REPLY_PORT + ".");
        setReplyPort(DEFAULT_REPLY_PORT);
        return;
    }
    link.portAsks += 1;
    outlet(OUT_STARTER, "free_port");
}

// From notono_daemon.js: a UDP port nothing listens on.
function reply_port_found(port) {
    if (!link.autoReply) { return; }
    link.autoReply = false;
    setReplyPort(clampInt(port, 1, 65535));
}

function start_daemon(value) {
    starter.auto = Number(value) !== 0;
}

function keep_daemon(value) {
    starter.keep = Number(value) !== 0;
}

function daemon_executable() {
    starter.executable = hfsToPosix(arrayfromargs(arguments).join(" "));
    starter.asked = false;
}

function isLoopback(host) {
    return host === "127.0.0.1" || host === "localhost" || host === "::1";
}

// Ask notono_daemon.js to start a daemon on the daemon port, once, when hellos go unanswered.
function maybeStartDaemon() {
    if (!starter.auto || starter.asked || starter.unanswered < HELLOS_BEFORE_START || !isLoopback(link.host)) {
        return;
    }
    starter.asked = true;
    status("No daemon on " + link.host + ":" + link.daemonPort + ": starting notono-live serve...");
    var args = ["start", link.daemonPort, starter.keep ? 1 : 0];
    if (starter.executable) { args.push(starter.executable); }
    outlet(OUT_STARTER, args);
}

// From notono_daemon.js.
function daemon_log() {
    if (link.state !== "connected") {
        status("Daemon: " + arrayfromargs(arguments).join(" "));
    }
}

function daemon_started(pid) {
    post("NOTONO Live: started notono-live serve (process " + pid + ")\n");
}

function daemon_missing() {
    status("Cannot start the daemon: " + arrayfromargs(arguments).join(" "));
}

function daemon_exited(code) {
    starter.asked = false;              // a later silence may start one again
    if (link.state !== "connected") {
        status("The daemon stopped (exit " + code + ") before it answered: see the Max window.");
    }
}

// Triggers: live.text buttons send 1 when pressed (and MIDI-mapped ones may send 0 on release).
function pressed(args) {
    return args.length === 0 || Number(args[0]) !== 0;
}

function generate() {
    if (!pressed(arguments)) { return; }
    var args = [controls.pitch, controls.family, controls.temperature, TOP_P, controls.variations, -1];
    if (controls.guidance >= 0) { args.push(0); }     // top_k (off) comes before guidance
    request("generate", ADDRESS.generate, withGuidance(args));
}

function inpaint() {
    if (!pressed(arguments) || !needSound("inpaint a region")) { return; }
    var r = controls.region;
    request("inpaint", ADDRESS.inpaintRegion, withGuidance([current.sound, controls.layer, r[1], r[0], r[3], r[2],
        controls.pitch, controls.family, controls.temperature, TOP_P, -1]));
}

function new_bottom() {
    if (!pressed(arguments) || !needSound("make a new bottom map")) { return; }
    request("bottom", ADDRESS.bottomRegenerate, withGuidance([current.sound, controls.pitch, controls.family,
        controls.temperature, TOP_P, -1]));
}

function erase() {
    if (!pressed(arguments) || !needSound("erase a region")) { return; }
    var r = controls.region;
    request("erase", ADDRESS.regionErase, [current.sound, controls.layer, r[1], r[0], r[3], r[2], ERASE_DB]);
}

function randomise() {
    if (!pressed(arguments) || !needSound("randomise a region")) { return; }
    var r = controls.region;
    request("randomize", ADDRESS.regionRandomize, [current.sound, controls.layer, r[1], r[0], r[3], r[2], -1]);
}

// The current sound at every semitone of two octaves around its pitch (inside the model's range).
function pack() {
    if (!pressed(arguments) || !needSound("make a sample pack from")) { return; }
    var centre = current.pitch || controls.pitch;
    var low = Math.max(PITCH_MIN, centre - PACK_SPAN), high = Math.min(PITCH_MAX, centre + PACK_SPAN);
    var id = request("pack", ADDRESS.pack, [current.sound, low, high, 1, -1]);
    if (id >= 0) {
        packs[id] = { renders: [], misses: 0, family: current.family, label: current.label };
        status("Sample pack: " + (high - low + 1) + " notes, " + noteName(low) + "-" + noteName(high) + "...");
    }
}

function undo() {
    if (!pressed(arguments) || !needSound("undo")) { return; }
    request("undo", ADDRESS.undo, [current.sound]);
}

function redo() {
    if (!pressed(arguments) || !needSound("redo")) { return; }
    request("redo", ADDRESS.redo, [current.sound]);
}

// An audio file dropped on the device, or a clip dragged from Live (live.drop gives its file).
// A NOTONO render (or Live's copy of one) is looked up in the daemon's history first, so its sound
// and version come back as they were, codes and all; only a file the daemon never made is encoded.
function drop(path) {
    if (!path || !liveReady) { return; }   // a value restored while the set loads is not a drop
    var id = request("find", ADDRESS.find, [hfsToPosix(path)]);
    if (id >= 0) { finding[id] = { path: hfsToPosix(path), encode: true }; }
}

// From [pattr] ("NOTONO State"): the current sound the set saved, before live.thisdevice on load,
// or later when Live's own Undo steps the parameter back.
function restore_state(wav, sound, version) {
    var label = arrayfromargs(arguments).slice(3).join(" ");
    if (!wav || String(wav) === storedWav) { return; }   // nothing saved, or the value just stored
    storedWav = String(wav);
    saved = { wav: hfsToPosix(wav), sound: Number(sound), version: Number(version), label: label };
    showFile(saved.wav);
    if (liveReady && link.state === "connected") { restoreSaved(); }
}

function restoreSaved() {
    if (!saved) { return; }
    var id = request("restore", ADDRESS.find, [saved.wav]);
    if (id >= 0) { finding[id] = { path: saved.wav, encode: false, label: saved.label }; }
    saved = null;
}

// The current sound into "NOTONO State", so the set remembers it (only when it changes).
function storeState() {
    if (current.wav === storedWav) { return; }
    storedWav = current.wav;
    outlet(OUT_VIEW, "state", "set", current.wav, current.sound, current.version, current.label);
}

function needSound(what) {
    if (current.sound > 0) {
        return true;
    }
    status("Nothing to " + what + " yet: press Generate or drop an audio file first.");
    return false;
}

// --- OSC out -------------------------------------------------------------------------------
function sendOsc(address, args) {
    outlet(OUT_OSC, [address].concat(args));
}

function request(kind, address, args) {
    if (link.state !== "connected") {
        status("Not connected to " + link.host + ":" + link.daemonPort +
               ": start notono-live serve (retrying).");
        return -1;
    }
    if (PLACES_CLIPS[kind] || kind === "pack") {
        syncProject(true);              // the set may have been saved (or saved elsewhere) since
    }
    var id = nextRequestId++;
    pending[id] = kind;
    sendOsc(address, [id].concat(args));
    return id;
}

// The saved set's file, or "" (unsaved, or a Live without Song.file_path).
function readSetPath() {
    if (!liveVersion || !versionAtLeast(liveVersion, PROJECT_LIVE_VERSION)) {
        return "";
    }
    var value = new LiveAPI(null, "live_set").get("file_path");
    value = Array.isArray(value) ? value.join(" ") : value;
    return value ? hfsToPosix(String(value)) : "";
}

// Renders go into the saved set's project (Samples/NOTONO beside the .als); the daemon is told
// whenever the set's file changes, and again after every hello (a restarted daemon forgot it). Its
// answer goes on the status line when `announce` (a change while working), else to the Max window.
function syncProject(announce) {
    if (!liveReady || link.state !== "connected") {
        return;
    }
    var setPath = readSetPath();
    if (setPath === project.sent) {
        return;
    }
    project.sent = setPath;
    var id = nextRequestId++;
    pending[id] = announce ? "project" : "project_quiet";
    sendOsc(ADDRESS.outputProject, [id, setPath]);
}

// Only the newest hello or ping can still be answered usefully; older ones are forgotten so that
// a daemon that stays away does not grow the pending table.
function forget(kind) {
    for (var id in pending) {
        if (pending.hasOwnProperty(id) && pending[id] === kind) {
            delete pending[id];
        }
    }
}

function sayHello() {
    forget("hello");
    starter.unanswered += 1;
    var id = nextRequestId++;
    pending[id] = "hello";
    sendOsc(ADDRESS.hello, [id, link.replyPort, 0, CLIENT_NAME]);
}

function reconnect() {
    if (link.state === "idle") {
        return;
    }
    link.state = "connecting";
    link.awaitingBeat = false;
    link.missedBeats = 0;
    sayHello();
}

// Every HEARTBEAT_MS: ping while connected; when pongs stop, say hello until the daemon answers,
// which also re-announces the reply port to a daemon that restarted.
function heartbeat() {
    if (link.state === "connected") {
        if (link.awaitingBeat) {
            link.missedBeats += 1;
        }
        if (link.missedBeats >= MISSED_BEATS_FOR_LOSS) {
            link.state = "lost";
            status("Lost the daemon on " + link.host + ":" + link.daemonPort +
                   ": is notono-live serve running? Retrying.");
            sayHello();
            return;
        }
        link.awaitingBeat = true;
        syncProject(true);               // a set saved since: even MIDI-triggered renders go there
        forget("ping");
        var id = nextRequestId++;
        pending[id] = "ping";
        sendOsc(ADDRESS.ping, [id]);
    } else if (link.state !== "idle") {
        if (link.autoReply) {
            askFreePort();           // no hello before the device has a port to hear the answer on
            return;
        }
        maybeStartDaemon();
        sayHello();
    }
}

// --- OSC in (inlet 1) ----------------------------------------------------------------------
function anything() {
    var args = arrayfromargs(arguments);
    if (inlet === 1) {
        receive(messagename, args);
    } else {
        post("notono.js: unknown message " + messagename + "\n");
    }
}

function receive(address, args) {
    link.awaitingBeat = false;
    link.missedBeats = 0;
    var id = args[0];
    if (address === ADDRESS.hello) {
        var wasLost = link.state === "lost";
        link.state = "connected";
        starter.unanswered = 0;
        link.daemon = "notono-live " + args[1] + " (" + args[2] + " on " + args[3] + ")";
        delete pending[id];
        status((wasLost ? "Reconnected to " : "Connected to ") + link.daemon + ".");
        project.sent = null;
        syncProject(false);              // the status line keeps "Connected to ..."
        restoreSaved();
    } else if (address === ADDRESS.pong) {
        delete pending[id];
        if (link.state !== "connected") {
            reconnect();
        }
    } else if (address === ADDRESS.outputFolder) {
        var folder = hfsToPosix(args[1]);
        post("NOTONO Live: renders go to " + folder + "\n");
        if (pending[id] === "project") { status("Renders go to " + folder + "."); }
    } else if (address === ADDRESS.progress) {
        status(describe(id) + ": " + args[2] + " " + Math.round(Number(args[1]) * 100) + "%");
    } else if (address === ADDRESS.sound) {
        soundReply(args);
    } else if (address === ADDRESS.notice) {
        // id sound version kind message: what a label alone does not say (off pitch, transposed, ...)
        var key = args[1] + ":" + args[2];
        notices[key] = (notices[key] || []).concat([String(args[3]).replace(/_/g, " ")]);
        if (packs[id] && String(args[3]) === "pitch_missed") { packs[id].misses += 1; }
        post("NOTONO Live: " + args[3] + ": " + args[4] + "\n");
        if (placed[key] && placed[key] !== "pending") {
            showPlaced(key);
        }
    } else if (address === ADDRESS.done) {
        var kind = pending[id];
        delete pending[id];
        delete finding[id];
        if (kind === "pack") {
            finishPack(id);
        } else if (kind && !QUIET_DONE[kind] && !PLACES_CLIPS[kind]) {
            status(describe(id, kind) + " done.");
        }
    } else if (address === ADDRESS.error) {
        if (finding.hasOwnProperty(id)) {
            foundNothing(id, String(args[1]), String(args[2]));
            return;
        }
        var failed = id === DAEMON_REQUEST_ID ? "daemon" : describe(id);
        delete pending[id];
        status("Error (" + failed + "): " + args[2]);
        if (packs[id] && packs[id].renders.length) {
            packs[id].stopped = String(args[2]);
            finishPack(id);              // the notes already rendered still make an instrument
        }
        delete packs[id];
    }
}

// A dropped file the daemon did not render is encoded, as any audio file; other failures (no such
// file, say) are shown as they are.
// The sound a set saved but this daemon does not have is left alone (encoding it would make a new
// sound at every load); its file stays named on the file line.
function foundNothing(id, code, message) {
    var asked = finding[id];
    delete finding[id];
    delete pending[id];
    if (code === "not_found" && asked.encode) {
        request("encode", ADDRESS.encode, [asked.path, controls.pitch, controls.family]);
    } else if (!asked.encode) {
        status("This set's sound (" + (asked.label || "see the file line") + ") is not in this daemon's " +
               "history: drop its clip on the device to edit it again.");
    } else {
        status("Error (drop): " + message);
    }
}

function describe(id, kind) {
    kind = kind || pending[id];
    if (id === DAEMON_REQUEST_ID) {
        return "MIDI-triggered render";
    }
    return kind ? kind : "request " + id;
}

function soundReply(args) {
    var render = {
        requestId: args[0], sound: args[1], version: args[2], wav: String(args[3]),
        png: String(args[4]), pitch: args[5], family: String(args[6]), label: String(args[7]),
        parent: args[8], operation: String(args[9]), sampleRate: args[10]
    };
    var kind = pending[render.requestId];
    var key = render.sound + ":" + render.version;
    if (kind === "pack") {
        packRender(render);
        return;
    }
    // The Pitch and Family parameters stay what the user set: the sound's own are shown in words.
    current = { sound: render.sound, version: render.version, png: render.png, wav: render.wav,
                pitch: render.pitch, family: render.family, label: render.label };
    outlet(OUT_VIEW, "grid", "spectrogram", render.png);
    showFile(hfsToPosix(render.wav));
    storeState();
    if ((PLACES_CLIPS[kind] || render.requestId === DAEMON_REQUEST_ID) && !placed[key]) {
        placed[key] = "pending";
        if (liveReady) {
            deferPlacement(render);
        } else {
            waitingForLive.push(render);
        }
    } else if (kind === "find" || kind === "restore") {
        status((kind === "find" ? "Found " : "Back to ") +
               (render.label || clipName(render.family, render.pitch, render.version)) +
               (kind === "find" ? " in the history: editing it (no new clip)." : ", as the set saved it."));
    } else {
        status("Now editing " + (render.label || clipName(render.family, render.pitch, render.version)) + ".");
    }
}

// --- Live ----------------------------------------------------------------------------------
// [live.thisdevice] bangs once the device is fully in the Live set: only now may LiveAPI be used.
function live_ready() {
    if (liveReady) {
        return;
    }
    liveReady = true;
    readLiveVersion();
    controls.region = clampRegion(controls.region, controls.layer);
    showLayer();
    showRegion();
    link.state = "connecting";
    status("Connecting to the daemon on " + link.host + ":" + link.daemonPort + "...");
    if (link.autoReply) {
        askFreePort();
    } else {
        sayHello();
    }
    heartbeatTask = new Task(heartbeat, this);
    heartbeatTask.interval = HEARTBEAT_MS;
    heartbeatTask.repeat();
    while (waitingForLive.length) {
        deferPlacement(waitingForLive.shift());
    }
}

// Tell the daemon to forget this device when it is deleted or the set closes.
function notifydeleted() {
    if (heartbeatTask) {
        heartbeatTask.cancel();
    }
    if (link.state === "connected") {
        sendOsc(ADDRESS.bye, [nextRequestId++]);
    }
}

function readLiveVersion() {
    var app = new LiveAPI(null, "live_app");
    liveVersion = [Number(first(app.call("get_major_version"))),
                   Number(first(app.call("get_minor_version"))),
                   Number(first(app.call("get_bugfix_version")))];
}

// Changing the Live set from a reply handler could land inside a notification or on the
// high-priority thread; a Task runs on the main thread, after the current event.
function deferPlacement(render) {
    var task = new Task(function () { placeClip(render); }, this);
    task.schedule(0);
}

function livePath(api) {
    var path = api.unquotedpath;
    if (path === undefined || path === null) {
        path = String(api.path).replace(/"/g, "");
    }
    return String(path);
}

function isValid(api) {
    return Number(api.id) !== 0;
}

// Where the next clip goes: {track, slot, path} or {error}.
//  target 0: the highlighted clip slot if it is empty, else the next empty slot below it;
//            without a highlighted slot, as target 1;
//  target 1: this device's track, the first empty slot from the selected scene down.
// With no empty slot left, a scene is added at the end of the set.
function chooseTargetSlot() {
    var trackIndex = -1, start = 0, match;
    if (controls.target === 0) {
        var highlighted = new LiveAPI(null, "live_set view highlighted_clip_slot");
        if (isValid(highlighted)) {
            match = /tracks (\d+) clip_slots (\d+)/.exec(livePath(highlighted));
            if (match) {
                trackIndex = Number(match[1]);
                start = Number(match[2]);
            }
        }
    }
    if (trackIndex < 0) {
        var own = new LiveAPI(null, "this_device canonical_parent");
        // A device inside a rack has a chain as parent; its track is the path's first part.
        match = /^live_set tracks (\d+)/.exec(livePath(own));
        if (!match) {
            return { error: "the device is not on an audio track (it is on " + livePath(own) +
                            "); put it on an audio track" };
        }
        trackIndex = Number(match[1]);
        var scene = new LiveAPI(null, "live_set view selected_scene");
        match = /scenes (\d+)/.exec(livePath(scene));
        start = match ? Number(match[1]) : 0;
    }
    var trackPath = "live_set tracks " + trackIndex;
    var track = new LiveAPI(null, trackPath);
    var trackName = String(first(track.get("name")));
    if (Number(first(track.get("has_audio_input"))) !== 1) {
        return { error: "track " + (trackIndex + 1) + " (" + trackName + ") is not an audio track" };
    }
    if (Number(first(track.get("is_foldable"))) === 1) {
        return { error: "track " + (trackIndex + 1) + " (" + trackName + ") is a group track" };
    }
    if (Number(first(track.get("is_frozen"))) === 1) {
        return { error: "track " + (trackIndex + 1) + " (" + trackName + ") is frozen" };
    }
    var count = track.getcount("clip_slots");
    for (var s = start; s < count; s++) {
        var slot = new LiveAPI(null, trackPath + " clip_slots " + s);
        if (Number(first(slot.get("has_clip"))) === 0) {
            return { track: trackIndex, slot: s, path: trackPath + " clip_slots " + s };
        }
    }
    var song = new LiveAPI(null, "live_set");
    song.call("create_scene", -1);
    return { track: trackIndex, slot: count, path: trackPath + " clip_slots " + count };
}

function placeClip(render) {
    var key = render.sound + ":" + render.version;
    var name = render.label || clipName(render.family, render.pitch, render.version);
    var path = hfsToPosix(render.wav);
    showFile(path);
    if (!liveVersion || !versionAtLeast(liveVersion, MIN_LIVE_VERSION)) {
        var have = liveVersion ? liveVersion.join(".") : "unknown";
        delete placed[key];
        status("Live " + have + " cannot make clips from files (needs " + MIN_LIVE_VERSION.join(".") +
               "): drag the file below in.");
        return false;
    }
    var where = chooseTargetSlot();
    if (where.error) {
        delete placed[key];
        status("Cannot place " + name + ": " + where.error + ".");
        return false;
    }
    var slot = new LiveAPI(null, where.path);
    // Checked again right before the call: a clip may have been recorded since the choice.
    if (Number(first(slot.get("has_clip"))) !== 0) {
        delete placed[key];
        status("Cannot place " + name + ": slot " + (where.slot + 1) + " just got a clip.");
        return false;
    }
    slot.call("create_audio_clip", path);
    var clip = new LiveAPI(null, where.path + " clip");
    if (isValid(clip)) {
        finishClip(clip, render, where);
        return true;
    }
    // Live may not list a clip it has just made until the current event is over: look once more.
    var retry = new Task(function () {
        var again = new LiveAPI(null, where.path + " clip");
        if (isValid(again)) {
            finishClip(again, render, where);
        } else {
            delete placed[key];
            status("Live made no clip in track " + (where.track + 1) + ", slot " + (where.slot + 1) +
                   " from the file below.");
        }
    }, this);
    retry.schedule(CLIP_RETRY_MS);
    return true;
}

// Name, colour, warping and looping of a clip made from a render.
function finishClip(clip, render, where) {
    var name = render.label || clipName(render.family, render.pitch, render.version);
    clip.set("name", name);
    clip.set("color", familyColour(render.family));
    var key = render.sound + ":" + render.version;
    placed[key] = name + " \u2192 track " + (where.track + 1) + ", slot " + (where.slot + 1);
    if (controls.warpBars > 0 && !render.inPack) {
        warpClip(clip, where.path + " clip", key, controls.warpBars);
    } else {
        clip.set("warping", 0);          // a one-shot plays as rendered, whatever the set's tempo
    }
    clip.set("looping", 0);
    showPlaced(key);
}

// Warp a clip so that its 4 s last `bars` bars of the set's time signature, at whatever tempo the
// set plays: warping on, then the warp marker at the sample's end moved to that beat (Live turns
// warping on after the current event, so the markers are read a moment later).
function warpClip(clip, clipPath, key, bars) {
    var song = new LiveAPI(null, "live_set");
    var numerator = Number(first(song.get("signature_numerator"))) || 4;
    var denominator = Number(first(song.get("signature_denominator"))) || 4;
    var beats = bars * numerator * 4 / denominator;
    clip.set("warping", 1);
    var task = new Task(function () { fitWarp(clipPath, key, bars, beats); }, this);
    task.schedule(WARP_DELAY_MS);
}

function fitWarp(clipPath, key, bars, beats) {
    var clip = new LiveAPI(null, clipPath);
    if (!isValid(clip)) { return; }
    var seconds = Number(first(clip.get("sample_length"))) / Number(first(clip.get("sample_rate")));
    var end = endMarker(warpMarkers(clip), seconds);
    if (end === null) {
        // Live listed no marker at the sample's end: pin the end to the beat instead
        clip.call("add_warp_marker", { beat_time: beats, sample_time: seconds });
        end = endMarker(warpMarkers(clip), seconds);
    }
    if (end === null) {
        clip.set("warping", 0);          // better a one-shot than a clip at a tempo nobody chose
        placed[key] += " (not warped: Live gave no warp marker to fit)";
    } else {
        if (Math.abs(end - beats) > 1e-9) {
            clip.call("move_warp_marker", end, beats - end);
        }
        clip.set("end_marker", beats);
        clip.set("loop_end", beats);
        placed[key] += ", warped to " + bars + (bars === 1 ? " bar" : " bars");
    }
    showPlaced(key);
}

// Clip.warp_markers: a dict, which the js LiveAPI hands over as JSON text.
function warpMarkers(clip) {
    var value = clip.get("warp_markers");
    var text = Array.isArray(value) ? value.join(" ") : String(value);
    try {
        var parsed = JSON.parse(text);
        return (parsed && parsed.warp_markers) || [];
    } catch (error) {
        return [];
    }
}

// The beat of the marker at the sample's end. Live lists one more marker after it, hidden, that
// only sets the last segment's tempo; it is never the one to move.
function endMarker(markers, seconds) {
    var best = null;
    for (var i = 0; i < markers.length - 1; i++) {
        var m = markers[i];
        if (Number(m.beat_time) > 0 && Math.abs(Number(m.sample_time) - seconds) < 0.01) {
            best = Number(m.beat_time);
        }
    }
    return best;
}

// --- Sample packs ----------------------------------------------------------------------------
// Each pitch of a pack is a new sound; they are gathered until the daemon's /notono/done, then laid
// out as one instrument: a Drum Rack on a new MIDI track, one pad per note, each pad's Simpler
// holding the render made for that note (so a key plays its own render, untransposed). Where Live
// cannot build it (before 12.4), the renders go into consecutive clip slots named by note.
function packRender(render) {
    var pack = packs[render.requestId];
    if (!pack) { return; }
    render.inPack = true;
    pack.renders.push(render);
    status("Sample pack: " + noteName(render.pitch) + " rendered (" + pack.renders.length + " so far)...");
}

function finishPack(id) {
    var pack = packs[id];
    delete packs[id];
    if (!pack || !pack.renders.length) {
        status("Sample pack: nothing was rendered.");
        return;
    }
    var task = new Task(function () { layOutPack(pack); }, this);   // changes the set: never from a reply
    task.schedule(0);
}

function layOutPack(pack) {
    var lowest = pack.renders[0], highest = pack.renders[pack.renders.length - 1];
    var what = pack.renders.length + " notes, " + noteName(lowest.pitch) + "-" + noteName(highest.pitch) +
               (pack.stopped ? ", cut short: " + pack.stopped : "");
    var missed = pack.misses ? "; " + pack.misses + " off pitch (see the Max window)" : "";
    var why = "";
    if (liveVersion && versionAtLeast(liveVersion, RACK_LIVE_VERSION)) {
        var rack = buildDrumRack(pack);
        if (!rack.error) {
            status("Sample pack (" + what + ") is a Drum Rack on track " + (rack.track + 1) + ": play it" + missed + ".");
            return;
        }
        why = " (no Drum Rack: " + rack.error + ")";
        post("NOTONO Live: no Drum Rack for the pack: " + rack.error + "\n");
    }
    var placedCount = 0;
    for (var i = 0; i < pack.renders.length; i++) {
        var render = pack.renders[i];
        render.label = noteName(render.pitch) + " " + render.family.replace(/_/g, " ") + " pack #" + render.sound;
        placed[render.sound + ":" + render.version] = "pending";
        if (placeClip(render)) { placedCount += 1; }
    }
    status("Sample pack (" + what + "): " + placedCount + " clips named by note" + why + missed + ".");
}

// A MIDI track after the device's own, holding a Drum Rack with one chain per render: the chain
// listens to the render's note (in_note) and plays it with a Simpler. {track} or {error}; a track
// left half-built is deleted again (it is this device's own, made a moment ago).
function buildDrumRack(pack) {
    var song = new LiveAPI(null, "live_set");
    var own = /^live_set tracks (\d+)/.exec(livePath(new LiveAPI(null, "this_device canonical_parent")));
    var index = own ? Number(own[1]) + 1 : Number(song.getcount("tracks"));
    song.call("create_midi_track", index);
    var trackPath = "live_set tracks " + index;
    var track = new LiveAPI(null, trackPath);
    if (!isValid(track) || Number(first(track.get("has_midi_input"))) !== 1) {
        return { error: "Live made no MIDI track" };
    }
    var fail = function (error) {
        song.call("delete_track", index);
        return { error: error };
    };
    track.set("name", "NOTONO " + pack.renders[0].family.replace(/_/g, " ") + " pack");
    track.call("insert_device", "Drum Rack");
    var rackPath = trackPath + " devices 0";
    var rack = new LiveAPI(null, rackPath);
    if (!isValid(rack) || Number(first(rack.get("can_have_drum_pads"))) !== 1) {
        return fail("Live did not insert a Drum Rack");
    }
    for (var i = 0; i < pack.renders.length; i++) {
        var render = pack.renders[i];
        rack.call("insert_chain");
        var chainPath = rackPath + " chains " + i;
        var chain = new LiveAPI(null, chainPath);
        if (!isValid(chain)) {
            return fail("Live made no chain for " + noteName(render.pitch));
        }
        chain.set("in_note", render.pitch);
        chain.set("name", noteName(render.pitch));
        chain.call("insert_device", "Simpler");
        var simpler = new LiveAPI(null, chainPath + " devices 0");
        if (!isValid(simpler)) {
            return fail("Live inserted no Simpler for " + noteName(render.pitch));
        }
        simpler.call("replace_sample", hfsToPosix(render.wav));
    }
    return { track: index };
}

// Where a version's clip went, with the daemon's notices about it.
function showPlaced(key) {
    status(placed[key] + (notices[key] ? ": " + notices[key].join(", ") + " (see the Max window)." : "."));
}

// Max calls any global function whose name arrives as a message; these are internal only.
[noteName, clipName, familyColour, hfsToPosix, versionAtLeast, withGuidance, status, storeState, restoreSaved, readSetPath, syncProject, warpClip, fitWarp, warpMarkers, endMarker,
 packRender, finishPack, layOutPack, buildDrumRack, showRegion, showLayer, setRegionPart, pressed, needSound, sendOsc, request, forget, sayHello,
 reconnect, heartbeat, receive, describe, foundNothing, soundReply, readLiveVersion, deferPlacement, livePath, isValid,
 chooseTargetSlot, placeClip, finishClip, showPlaced, clampInt, clampRegion, convertRegion, first, textWidth, fitEnd,
 fitMiddle, showFile, span, isLoopback, maybeStartDaemon, setReplyPort, askFreePort].forEach(function (f) {
    f.local = 1;
});
