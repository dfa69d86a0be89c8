// The device's JavaScript under Node, against the recording Live stand-in.
// Runs every case and prints one JSON document: {"constants": {...}, "cases": {name: {ok, error}}};
// tests/test_device.py turns each case into a pytest test and checks the constants against
// notono_live. Usage: node tests/node/device_cases.js
'use strict';

const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { LiveSet, loadDevice, loadGrid } = require('./max_stand_in');
const { writePng } = require('./png');
const { runCases } = require('./run_cases');
const { fits } = require('./view_font');

const OSC = 0;
const RECEIVER = 1;
const VIEW = 2;
const WAV = '/Users/me/Music/NOTONO/0001-organ-C3-v001.wav';
const PNG = '/Users/me/Music/NOTONO/0001-organ-C3-v001.png';

// Values from the script's own realm (its arrays) compared by content.
function same(actual, expected, message) {
    assert.deepStrictEqual(JSON.parse(JSON.stringify(actual)), JSON.parse(JSON.stringify(expected)), message);
}

const devices = [];   // every device made, so the OSC they sent can be checked against the protocol

function device(liveSpec) {
    const live = new LiveSet(liveSpec || {});
    const d = loadDevice({ live });
    devices.push(d);
    return { d, live };
}

// A device that has loaded in Live and heard the daemon's hello.
function connected(liveSpec) {
    const { d, live } = device(liveSpec);
    d.send(0, 'live_ready');
    const hello = d.sent(OSC).find((m) => m[0] === '/notono/hello');
    d.send(1, '/notono/hello', hello[1], '0.1.0', 'notono-lite', 'cpu', 0, '/tmp/out', 44100, 1);
    d.clearOutlets();
    return { d, live };
}

function lastOsc(d, address) {
    const all = d.sent(OSC).filter((m) => m[0] === address);
    assert.ok(all.length, `no ${address} was sent; sent: ${JSON.stringify(d.sent(OSC))}`);
    return all[all.length - 1];
}

function statusText(d) {
    const all = d.sent(VIEW).filter((m) => m[0] === 'status');
    return all.length ? all[all.length - 1][2] : '';
}

// The daemon's reply to a request: /notono/sound for a new version.
function soundReply(d, requestId, o = {}) {
    const sound = o.sound || 1;
    const version = o.version || 1;
    const family = o.family || 'organ';
    const pitch = o.pitch || 60;
    d.send(1, '/notono/sound', requestId, sound, version, o.wav || WAV, o.png || PNG, pitch, family,
        o.label === undefined ? `${family} C3 #${sound} v${version}` : o.label, o.parent || 0,
        o.operation || 'generate', 44100);
}

function generateOnce(d) {
    d.send(0, 'generate', 1);
    return lastOsc(d, '/notono/generate')[1];
}

function creates(live) {
    return live.calls.filter((c) => c.op === 'call' && c.name === 'create_audio_clip');
}

const cases = {};

cases.note_names_follow_live = () => {
    const { d } = device();
    const c = d.context;
    assert.strictEqual(c.noteName(60), 'C3');
    assert.strictEqual(c.noteName(24), 'C0');
    assert.strictEqual(c.noteName(84), 'C5');
    assert.strictEqual(c.noteName(61), 'C#3');
    assert.strictEqual(c.noteName(59), 'B2');
    assert.strictEqual(c.clipName('synth_lead', 60, 4), 'synth lead C3 \u00b7 v4');
};

cases.family_colours_distinct_rgb = () => {
    const { d } = device();
    const c = d.context;
    const colours = c.FAMILIES.map((f) => c.familyColour(f));
    assert.strictEqual(new Set(colours).size, 11);
    for (const colour of colours) assert.ok(colour > 0 && colour <= 0xFFFFFF, colour.toString(16));
};

cases.hfs_paths_become_posix = () => {
    const { d } = device();
    const c = d.context;
    assert.strictEqual(c.hfsToPosix('Macintosh HD:/Users/me/My Samples/kick one.wav'), '/Users/me/My Samples/kick one.wav');
    assert.strictEqual(c.hfsToPosix('Samples SSD:/Packs/pad.aif'), '/Volumes/Samples SSD/Packs/pad.aif');
    assert.strictEqual(c.hfsToPosix('/Users/me/a.wav'), '/Users/me/a.wav');
    assert.strictEqual(c.hfsToPosix('C:/Users/me/a.wav'), 'C:/Users/me/a.wav');
    assert.strictEqual(c.hfsToPosix('Data:'), '/Volumes/Data/');
};

cases.drop_sends_posix_path_as_one_symbol = () => {
    const { d } = connected();
    d.send(0, 'pitch', 48);
    d.send(0, 'family', 3);
    d.send(0, 'drop', 'Macintosh HD:/Users/me/My Samples/kick one.wav');
    const find = lastOsc(d, '/notono/sound/find');
    same(find.slice(2), ['/Users/me/My Samples/kick one.wav']);
    assert.strictEqual(d.sent(OSC).filter((m) => m[0] === '/notono/encode').length, 0,
        'a file is looked up in the history before it is encoded');
    // not a NOTONO render: encoded as any audio file
    d.send(1, '/notono/error', find[1], 'not_found', '/Users/me/My Samples/kick one.wav is not a render');
    const m = lastOsc(d, '/notono/encode');
    same(m.slice(2), ['/Users/me/My Samples/kick one.wav', 48, 'guitar']);
};

cases.dropped_notono_clip_is_found_not_encoded = () => {
    const { d, live } = connected({ scenes: 4 });
    d.send(0, 'drop', '/Users/me/Music/Set Project/Samples/Imported/organ C3 #1 v2.wav');
    const find = lastOsc(d, '/notono/sound/find');
    soundReply(d, find[1], { sound: 1, version: 2, wav: WAV, png: PNG, operation: 'inpaint' });
    d.send(1, '/notono/done', find[1], 1);
    d.scheduler.flush();
    assert.strictEqual(d.sent(OSC).filter((m) => m[0] === '/notono/encode').length, 0);
    assert.strictEqual(creates(live).length, 0, 'the dropped clip is already in the set');
    same([d.context.current.sound, d.context.current.version], [1, 2]);
    assert.match(statusText(d), /^Found organ C3 #1 v2 in the history/);
    // other failures are shown as they are, with nothing encoded
    d.send(0, 'drop', '/gone.wav');
    d.send(1, '/notono/error', lastOsc(d, '/notono/sound/find')[1], 'bad_file', 'no file /gone.wav');
    assert.strictEqual(statusText(d), 'Error (drop): no file /gone.wav');
    assert.strictEqual(d.sent(OSC).filter((m) => m[0] === '/notono/encode').length, 0);
};

cases.hello_announces_reply_port_at_load = () => {
    const { d } = device();
    d.send(0, 'reply_port', 9123);
    same(d.sent(RECEIVER), [['port', 9123]]);
    assert.strictEqual(d.sent(OSC).filter((m) => m[0] === '/notono/hello').length, 0,
        'no OSC before live.thisdevice says the device is ready');
    d.send(0, 'live_ready');
    const hello = lastOsc(d, '/notono/hello');
    assert.strictEqual(hello[2], 9123);
    assert.ok(Number.isInteger(hello[1]) && hello[1] >= 0);
};

cases.heartbeat_loss_then_hello_again = () => {
    const { d } = connected();
    assert.strictEqual(d.context.link.state, 'connected');
    d.scheduler.tick();
    const ping = lastOsc(d, '/notono/ping');
    d.send(1, '/notono/pong', ping[1], 0, 0);
    d.scheduler.tick();
    d.scheduler.tick();
    d.scheduler.tick();
    assert.strictEqual(d.context.link.state, 'connected', 'two missed pongs are tolerated');
    d.clearOutlets();
    d.scheduler.tick();
    assert.strictEqual(d.context.link.state, 'lost');
    assert.match(statusText(d), /Lost the daemon on 127\.0\.0\.1:7400/);
    const hello = lastOsc(d, '/notono/hello');
    assert.strictEqual(hello[2], 7401, 'the reply port is announced again');
    d.scheduler.tick();
    assert.strictEqual(d.sent(OSC).filter((m) => m[0] === '/notono/hello').length, 2, 'keeps saying hello');
    d.send(1, '/notono/hello', hello[1], '0.1.0', 'notono-lite', 'cpu', 0, '/tmp/out', 44100, 1);
    assert.strictEqual(d.context.link.state, 'connected');
    assert.match(statusText(d), /^Reconnected to notono-live 0\.1\.0/);
};

cases.requests_refused_while_disconnected = () => {
    const { d } = device();
    d.send(0, 'live_ready');
    d.clearOutlets();
    d.send(0, 'generate', 1);
    assert.strictEqual(d.sent(OSC).length, 0);
    assert.match(statusText(d), /Not connected to 127\.0\.0\.1:7400.*notono-live serve/);
};

cases.generate_request = () => {
    const { d } = connected();
    d.send(0, 'pitch', 62);
    d.send(0, 'family', 6);
    d.send(0, 'temperature', 0.9);
    d.send(0, 'variations', 3);
    d.send(0, 'generate', 1);
    const m = lastOsc(d, '/notono/generate');
    same(m.slice(2), [62, 'organ', 0.9, 0.8, 3, -1]);
    d.send(0, 'generate', 0);
    assert.strictEqual(d.sent(OSC).filter((x) => x[0] === '/notono/generate').length, 1,
        'a button release (0) is not a press');
};

cases.guidance_menu_reaches_the_three_sampling_requests = () => {
    const { d } = connected();
    // "auto" (index 0, the initial entry) leaves guidance out: the daemon's default applies
    d.send(0, 'guidance', 0);
    d.send(0, 'generate', 1);
    same(lastOsc(d, '/notono/generate').slice(2), [60, 'keyboard', 1.0, 0.8, 1, -1]);
    d.send(0, 'guidance', 3);                // "2"
    d.send(0, 'generate', 1);
    // pitch family temperature top_p variations seed top_k guidance
    same(lastOsc(d, '/notono/generate').slice(2), [60, 'keyboard', 1.0, 0.8, 1, -1, 0, 2]);
    const id = lastOsc(d, '/notono/generate')[1];
    soundReply(d, id, { sound: 5, version: 1, family: 'keyboard' });
    d.scheduler.flush();
    d.send(0, 'guidance', 2);                // "1.5"
    d.send(0, 'inpaint', 1);
    // sound layer row col height width pitch family temperature top_p seed guidance
    same(lastOsc(d, '/notono/inpaint/region').slice(2), [5, 'top', 0, 0, 1, 1, 60, 'keyboard', 1.0, 0.8, -1, 1.5]);
    d.send(0, 'guidance', 99);               // clamped to the last entry, "4"
    d.send(0, 'new_bottom', 1);
    same(lastOsc(d, '/notono/bottom/regenerate').slice(2), [5, 60, 'keyboard', 1.0, 0.8, -1, 4]);
    d.send(0, 'guidance', 0);
    d.send(0, 'new_bottom', 1);
    same(lastOsc(d, '/notono/bottom/regenerate').slice(2), [5, 60, 'keyboard', 1.0, 0.8, -1]);
};

cases.grid_drag_becomes_inpaint_request = () => {
    const { d } = connected();
    const id = generateOnce(d);
    soundReply(d, id, { sound: 7, version: 1 });
    d.scheduler.flush();
    // Drag on a 200 x 136 grid of the top map (4 columns of 50 px, 32 rows of 4.25 px) from
    // column 1 / 10 rows below the top, to column 2 / 17 rows below the top.
    const grid = loadGrid([200, 136]);
    grid.send(0, 'onclick', 60, 10 * 4.25 + 1);
    grid.send(0, 'ondrag', 140, 17 * 4.25 + 1, 1);
    assert.strictEqual(grid.sent(0).length, 0, 'nothing is sent while the mouse is down');
    grid.send(0, 'ondrag', 140, 17 * 4.25 + 1, 0);
    const [selection] = grid.sent(0);
    same(selection, ['region', 1, 14, 2, 8]);
    d.send(0, ...selection);
    d.send(0, 'temperature', 1.2);
    d.send(0, 'inpaint', 1);
    const m = lastOsc(d, '/notono/inpaint/region');
    // sound layer row col height width pitch family temperature top_p seed; pitch and family are
    // the Pitch and Family parameters, which a reply never overwrites
    same(m.slice(2), [7, 'top', 14, 1, 8, 2, 60, 'keyboard', 1.2, 0.8, -1]);
    // The view follows: the grid and the region label show the region, without re-sending it.
    same(d.sent(VIEW).filter((x) => x[0] === 'grid' && x[1] === 'setregion').pop(),
        ['grid', 'setregion', 1, 14, 2, 8]);
};

cases.mapped_region_controls_drive_inpaint_erase_randomise = () => {
    const { d } = connected();
    soundReply(d, generateOnce(d), { sound: 3 });
    d.send(0, 'layer', 1);                   // bottom: 64 x 8
    d.send(0, 'region_x', 6);
    d.send(0, 'region_width', 5);            // only 2 columns are left after column 6
    d.send(0, 'region_y', 40);
    d.send(0, 'region_height', 10);
    same(d.context.controls.region, [6, 40, 2, 10]);
    same(d.sent(VIEW).filter((x) => x[0] === 'region').pop(), ['region', 'set', 'Region: bottom col 6-7, row 40-49']);
    d.send(0, 'inpaint', 1);
    same(lastOsc(d, '/notono/inpaint/region').slice(2, 8), [3, 'bottom', 40, 6, 10, 2]);
    d.send(0, 'erase', 1);
    same(lastOsc(d, '/notono/region/erase').slice(2), [3, 'bottom', 40, 6, 10, 2, 24]);
    d.send(0, 'randomise', 1);
    same(lastOsc(d, '/notono/region/randomize').slice(2), [3, 'bottom', 40, 6, 10, 2, -1]);
    d.send(0, 'new_bottom', 1);
    same(lastOsc(d, '/notono/bottom/regenerate').slice(2), [3, 60, 'keyboard', 1, 0.8, -1]);
    d.send(0, 'undo', 1);
    same(lastOsc(d, '/notono/sound/undo').slice(2), [3]);
    d.send(0, 'redo', 1);
    same(lastOsc(d, '/notono/sound/redo').slice(2), [3]);
};

cases.layer_switch_keeps_the_same_stretch = () => {
    const { d } = connected();
    d.send(0, 'region', 1, 4, 2, 8);
    d.send(0, 'layer', 1);
    same(d.context.controls.region, [2, 8, 4, 16]);
    d.send(0, 'region', 3, 9, 2, 2);         // bottom cells 3-4 x 9-10
    d.send(0, 'layer', 0);
    same(d.context.controls.region, [1, 4, 2, 2], 'smallest top region covering it');
    same(d.sent(VIEW).filter((x) => x[0] === 'grid' && x[1] === 'setlayer').pop(),
        ['grid', 'setlayer', 'top']);
};

cases.saved_region_survives_restore_order = () => {
    // Live restores a saved bottom-layer region; the Layer parameter happens to come last.
    const { d } = device();
    d.send(0, 'region_x', 6);
    d.send(0, 'region_y', 40);
    d.send(0, 'region_width', 2);
    d.send(0, 'region_height', 10);
    d.send(0, 'layer', 1);
    d.send(0, 'live_ready');
    same(d.context.controls.region, [6, 40, 2, 10]);
    assert.strictEqual(d.context.controls.layer, 'bottom');
    same(d.sent(VIEW).filter((x) => x[0] === 'grid' && x[1] === 'setregion').pop(), ['grid', 'setregion', 6, 40, 2, 10]);
};

cases.device_in_a_rack_uses_its_track = () => {
    const { d, live } = connected({ scenes: 2, device: 'live_set tracks 1 devices 0 chains 0',
                                    tracks: [{ name: 'A' }, { name: 'B' }] });
    d.send(0, 'target', 1);
    soundReply(d, generateOnce(d));
    d.scheduler.flush();
    same(creates(live).map((c) => c.path), ['live_set tracks 1 clip_slots 0']);
};

cases.edits_need_a_sound = () => {
    const { d } = connected();
    d.send(0, 'inpaint', 1);
    assert.strictEqual(d.sent(OSC).length, 0);
    assert.match(statusText(d), /Nothing to inpaint a region yet/);
};

cases.clip_goes_to_highlighted_empty_slot = () => {
    const { d, live } = connected({ scenes: 4, highlighted: [0, 2] });
    soundReply(d, generateOnce(d));
    assert.strictEqual(creates(live).length, 0, 'the Live set is changed from a deferred task');
    d.scheduler.flush();
    same(creates(live).map((c) => [c.path, c.args]),
        [['live_set tracks 0 clip_slots 2', [WAV]]]);
    same(live.errors, []);
};

cases.never_overwrites_a_clip = () => {
    const existing = { 1: '/old/a.wav', 2: '/old/b.wav', 4: '/old/c.wav' };
    const { d, live } = connected({ scenes: 6, highlighted: [0, 1], tracks: [{ clips: existing }] });
    const id = generateOnce(d);
    for (let v = 1; v <= 3; v++) soundReply(d, id, { sound: v, wav: `/out/s${v}.wav` });
    d.scheduler.flush();
    same(creates(live).map((c) => c.path), [
        'live_set tracks 0 clip_slots 3', 'live_set tracks 0 clip_slots 5', 'live_set tracks 0 clip_slots 6']);
    assert.ok(live.calls.some((c) => c.op === 'call' && c.name === 'create_scene'), 'a scene was added');
    for (const [slot, file] of Object.entries(existing)) {
        assert.strictEqual(live.clipAt(0, Number(slot)).file_path, file);
    }
    same(live.errors, []);
};

cases.this_track_from_selected_scene = () => {
    const { d, live } = connected({
        scenes: 5, device: 'live_set tracks 1', selectedScene: 2, highlighted: [0, 0],
        tracks: [{ name: 'Drums' }, { name: 'NOTONO', clips: { 2: '/old/x.wav' } }],
    });
    d.send(0, 'target', 1);
    soundReply(d, generateOnce(d));
    d.scheduler.flush();
    same(creates(live).map((c) => c.path), ['live_set tracks 1 clip_slots 3']);
};

cases.highlight_missing_falls_back_to_this_track = () => {
    const { d, live } = connected({ scenes: 3, highlighted: null, tracks: [{ clips: { 0: '/old/x.wav' } }] });
    soundReply(d, generateOnce(d));
    d.scheduler.flush();
    same(creates(live).map((c) => c.path), ['live_set tracks 0 clip_slots 1']);
};

cases.clip_named_coloured_unwarped_unlooped = () => {
    const { d, live } = connected({ scenes: 2 });
    soundReply(d, generateOnce(d), { family: 'string', label: 'string C3 #1 v1' });
    d.scheduler.flush();
    const clip = live.clipAt(0, 0);
    same(clip, { file_path: WAV, name: 'string C3 #1 v1', color: 0xDC3C3C, warping: 0, looping: 0 });
    const sets = live.calls.filter((c) => c.op === 'set').map((c) => [c.path, c.name]);
    same(sets, [['live_set tracks 0 clip_slots 0 clip', 'name'],
        ['live_set tracks 0 clip_slots 0 clip', 'color'], ['live_set tracks 0 clip_slots 0 clip', 'warping'],
        ['live_set tracks 0 clip_slots 0 clip', 'looping']]);
    assert.match(statusText(d), /string C3 #1 v1 \u2192 track 1, slot 1/);
};

// The Warp menu: each new clip lasts that many bars of the set's time signature, at any tempo.
cases.warp_fits_a_render_to_bars_of_the_set = () => {
    for (const [choice, bars, tempo, signature, beats] of [[2, 2, 128, [4, 4], 8], [1, 1, 90, [6, 8], 3],
                                                          [3, 4, 174, [3, 4], 12]]) {
        const { d, live } = connected({ scenes: 2, tempo, signature });
        d.send(0, 'warp_bars', choice);
        soundReply(d, generateOnce(d), { family: 'string', label: 'string C3 #1 v1' });
        d.scheduler.flush();
        const clip = live.clipAt(0, 0);
        assert.strictEqual(clip.warping, 1);
        assert.strictEqual(clip.looping, 0);
        const markers = JSON.parse(clip.markers ? JSON.stringify(clip.markers) : '[]');
        // the sample's end (4 s) now sits on the last beat of the bars; the start stays at 0
        same(markers.slice(0, 2).map((m) => [m.sample_time, m.beat_time]), [[0, 0], [4, beats]]);
        assert.strictEqual(clip.end_marker, beats);
        assert.strictEqual(clip.loop_end, beats);
        assert.deepStrictEqual(live.errors, []);
        assert.match(statusText(d), new RegExp(`warped to ${bars} bars?\\.$`));
    }
};

// A Live that lists only the start marker and the hidden one: the end is pinned with a new marker.
cases.warp_adds_an_end_marker_when_live_lists_none = () => {
    const { d, live } = connected({ scenes: 2, tempo: 100, endMarker: false });
    d.send(0, 'warp_bars', 1);
    soundReply(d, generateOnce(d), {});
    d.scheduler.flush();
    const clip = live.clipAt(0, 0);
    assert.deepStrictEqual(live.errors, []);
    same(clip.markers.slice(0, 2).map((m) => [m.sample_time, m.beat_time]), [[0, 0], [4, 4]]);
    assert.strictEqual(clip.warping, 1);
    assert.strictEqual(clip.end_marker, 4);
    assert.match(statusText(d), /warped to 1 bar\.$/);
};

cases.warp_off_leaves_one_shots_and_old_live_says_so = () => {
    const { d, live } = connected({ scenes: 2 });
    d.send(0, 'warp_bars', 0);
    soundReply(d, generateOnce(d), {});
    d.scheduler.flush();
    assert.strictEqual(live.clipAt(0, 0).warping, 0);
    assert.ok(!live.calls.some((c) => c.name === 'move_warp_marker'));
    // a Live whose clips list no warp markers keeps its own guess, and the status says so
    const old = connected({ scenes: 2, version: [12, 0, 5] });
    old.live.since = function (version, what) {
        if (what === 'get warp_markers') { this.fail('get: no property warp_markers'); return false; }
        return LiveSet.prototype.since.call(this, version, what);
    };
    old.d.send(0, 'warp_bars', 2);
    soundReply(old.d, generateOnce(old.d), {});
    old.d.scheduler.flush();
    assert.strictEqual(old.live.clipAt(0, 0).warping, 0, 'a clip that cannot be fitted stays a one-shot');
    assert.match(statusText(old.d), /not warped: Live gave no warp marker to fit/);
};

// Renders go into the saved set's project; the daemon is told again when the set is saved elsewhere,
// and after it restarts.
cases.renders_go_into_the_saved_sets_project = () => {
    const SET = '/Users/me/Music/Song Project/Song.als';
    // (connected() clears what was sent up to the hello reply; the history keeps it)
    const announced = (d) => d.history.filter(([i, m]) => i === OSC && m[0] === '/notono/output/project').map(([, m]) => m);
    const { d, live } = connected({ scenes: 4, filePath: SET });
    const project = announced(d).pop();
    same(project.slice(2), [SET]);
    d.send(1, '/notono/output/folder', project[1], '/Users/me/Music/Song Project/Samples/NOTONO');
    d.send(1, '/notono/done', project[1], 1);
    // at connection the status line keeps saying so; the folder goes to the Max window
    assert.match(d.context.lastStatus, /^Connected to notono-live/);
    assert.ok(d.posts.some((p) => p.includes('renders go to /Users/me/Music/Song Project/Samples/NOTONO')));
    d.clearOutlets();
    generateOnce(d);
    assert.strictEqual(d.sent(OSC).filter((m) => m[0] === '/notono/output/project').length, 0, 'said once');
    // Save As elsewhere: the next render request is preceded by the new project
    live.filePath = '/Volumes/Gig/Live Set Project/Live Set.als';
    d.clearOutlets();
    generateOnce(d);
    same(d.sent(OSC).map((m) => m[0]), ['/notono/output/project', '/notono/generate']);
    same(d.sent(OSC)[0].slice(2), ['/Volumes/Gig/Live Set Project/Live Set.als']);
    d.send(1, '/notono/output/folder', d.sent(OSC)[0][1], '/Volumes/Gig/Live Set Project/Samples/NOTONO');
    assert.strictEqual(d.context.lastStatus, 'Renders go to /Volumes/Gig/Live Set Project/Samples/NOTONO.');
    // saved again elsewhere with no render asked for: the heartbeat tells the daemon (MIDI renders)
    live.filePath = '/Volumes/Gig/Other Project/Other.als';
    d.clearOutlets();
    d.scheduler.tick();
    same(lastOsc(d, '/notono/output/project').slice(2), ['/Volumes/Gig/Other Project/Other.als']);
    // a restarted daemon forgot it: the hello that reconnects announces it again
    d.clearOutlets();
    d.send(1, '/notono/hello', 99, '0.1.0', 'notono-lite', 'cpu', 0, '/tmp/out', 44100, 1);
    same(lastOsc(d, '/notono/output/project').slice(2), ['/Volumes/Gig/Other Project/Other.als']);
    // an unsaved set, or a Live before 11.3 (no Song.file_path), renders into the daemon's folder
    const unsaved = connected({ scenes: 2 });
    same(announced(unsaved.d).map((m) => m.slice(2)), [['']]);
    const old = connected({ scenes: 2, version: [11, 2, 0], filePath: SET });
    same(announced(old.d).map((m) => m.slice(2)), [['']]);
    assert.deepStrictEqual(old.live.errors, [], 'no call Live 11.2 does not have');
};

// A sample pack: the sound at every semitone of two octaves around its pitch.
function packOf(liveSpec, pitch = 60) {
    const { d, live } = connected(liveSpec);
    soundReply(d, generateOnce(d), { sound: 3, pitch, family: 'organ', label: 'organ C3 #3 v1' });
    d.scheduler.flush();
    d.send(0, 'pack', 1);
    const request = lastOsc(d, '/notono/pack');
    const [low, high] = [request[3], request[4]];
    for (let p = low, sound = 10; p <= high; p++, sound++) {
        soundReply(d, request[1], { sound, version: 1, pitch: p, family: 'organ', operation: 'pack',
            wav: `/out/pack/${p}.wav`, png: `/out/pack/${p}.png`, label: `organ ${d.context.noteName(p)} #${sound} v1` });
    }
    d.send(1, '/notono/notice', request[1], 12, 1, 'pitch_missed', 'pYIN hears it 70 cents off');
    d.send(1, '/notono/done', request[1], high - low + 1);
    d.scheduler.flush();
    return { d, live, request };
}

cases.sample_pack_becomes_a_drum_rack_played_by_note = () => {
    const { d, live, request } = packOf({ version: [12, 4, 0], scenes: 2, tracks: [{ name: 'NOTONO' }] });
    same(request.slice(2), [3, 48, 72, 1, -1]);
    assert.deepStrictEqual(live.errors, []);
    assert.strictEqual(creates(live).length, 1, 'no clips for the pack, only the generated sound\'s');
    const track = live.tracks[1];
    assert.strictEqual(track.kind, 'midi');
    assert.strictEqual(track.name, 'NOTONO organ pack');
    const rack = track.devices[0];
    assert.strictEqual(rack.name, 'Drum Rack');
    assert.strictEqual(rack.chains.length, 25);
    rack.chains.forEach((chain, i) => {
        assert.strictEqual(chain.in_note, 48 + i, 'each pad listens to its own note');
        assert.strictEqual(chain.name, d.context.noteName(48 + i));
        same(chain.devices.map((dev) => [dev.name, dev.sample]), [['Simpler', `/out/pack/${48 + i}.wav`]]);
    });
    assert.match(statusText(d), /^Sample pack \(25 notes, C2-C4\) is a Drum Rack on track 2: play it; 1 off pitch/);
    assert.strictEqual(d.context.current.sound, 3, 'the pack does not change the sound being edited');
};

cases.sample_pack_as_clips_named_by_note_before_live_12_4 = () => {
    const { d, live } = packOf({ version: [12, 1, 0], scenes: 2 }, 80);
    assert.strictEqual(live.tracks.length, 1, 'no MIDI track');
    const names = live.tracks[0].slots.slice(1).map((c) => c && c.name);
    same(names, Array.from({ length: 17 }, (_, i) => `${d.context.noteName(68 + i)} organ pack #${10 + i}`));
    assert.ok(live.tracks[0].slots.slice(1).every((c) => c.warping === 0), 'pack clips stay one-shots');
    assert.match(statusText(d), /^Sample pack \(17 notes, G#3-C5\): 17 clips named by note; 1 off pitch/);
};

// The daemon stops a pack half-way (busy, shut down): the notes already rendered are still laid out.
cases.sample_pack_cut_short_keeps_the_notes_it_got = () => {
    const { d, live } = connected({ version: [12, 4, 0], scenes: 2 });
    soundReply(d, generateOnce(d), { sound: 3, pitch: 60, family: 'organ' });
    d.scheduler.flush();
    d.send(0, 'pack', 1);
    const request = lastOsc(d, '/notono/pack');
    for (const p of [48, 49, 50]) {
        soundReply(d, request[1], { sound: p, pitch: p, family: 'organ', operation: 'pack', wav: `/out/${p}.wav` });
    }
    d.send(1, '/notono/error', request[1], 'busy', 'the daemon is shutting down');
    d.scheduler.flush();
    same(live.tracks[1].devices[0].chains.map((c) => [c.in_note, c.devices[0].sample]),
        [[48, '/out/48.wav'], [49, '/out/49.wav'], [50, '/out/50.wav']]);
    assert.match(d.context.lastStatus, /^Sample pack \(3 notes, C2-D2, cut short: the daemon is shutting down\) is a Drum Rack/);
};

cases.sample_pack_falls_back_to_clips_when_live_refuses_a_rack = () => {
    const { d, live } = packOf({ version: [12, 4, 0], scenes: 2, refuses: ['Drum Rack'] }, 40);
    assert.strictEqual(live.tracks.length, 1, 'the half-built MIDI track is removed again');
    assert.strictEqual(creates(live).length, 1 + 25);
    assert.match(d.context.lastStatus, /clips named by note \(no Drum Rack: Live did not insert a Drum Rack\)/);
};

cases.clip_name_fallback_without_label = () => {
    const { d, live } = connected({ scenes: 2 });
    soundReply(d, generateOnce(d), { family: 'organ', version: 4, label: '' });
    d.scheduler.flush();
    assert.strictEqual(live.clipAt(0, 0).name, 'organ C3 \u00b7 v4');
};

cases.old_live_gets_a_clear_message = () => {
    const { d, live } = connected({ version: [12, 0, 4], scenes: 2 });
    soundReply(d, generateOnce(d));
    d.scheduler.flush();
    assert.strictEqual(creates(live).length, 0);
    const text = statusText(d);
    assert.match(text, /Live 12\.0\.4 cannot make clips from files \(needs 12\.0\.5\)/);
    same(d.sent(VIEW).filter((x) => x[0] === 'file').pop(), ['file', 'set', `File: ${WAV}`]);
    const appCalls = live.calls.filter((c) => c.path === 'live_app').map((c) => c.name);
    same(appCalls, ['get_major_version', 'get_minor_version', 'get_bugfix_version']);
};

cases.newer_live_versions_pass = () => {
    const { d } = device();
    const c = d.context;
    assert.ok(c.versionAtLeast([12, 0, 5], [12, 0, 5]));
    assert.ok(c.versionAtLeast([12, 1, 0], [12, 0, 5]));
    assert.ok(c.versionAtLeast([13, 0, 0], [12, 0, 5]));
    assert.ok(!c.versionAtLeast([11, 3, 25], [12, 0, 5]));
    assert.ok(!c.versionAtLeast([12, 0, 4], [12, 0, 5]));
};

cases.midi_track_gets_a_clear_message = () => {
    const { d, live } = connected({ scenes: 2, tracks: [{ name: 'Keys', kind: 'midi' }] });
    soundReply(d, generateOnce(d));
    d.scheduler.flush();
    assert.strictEqual(creates(live).length, 0);
    assert.match(statusText(d), /track 1 \(Keys\) is not an audio track\.$/);
    same(d.sent(VIEW).filter((x) => x[0] === 'file').pop(), ['file', 'set', `File: ${WAV}`]);
};

cases.undo_updates_view_without_new_clip = () => {
    const { d, live } = connected({ scenes: 4 });
    soundReply(d, generateOnce(d), { sound: 2, version: 1 });
    d.send(0, 'inpaint', 1);
    soundReply(d, lastOsc(d, '/notono/inpaint/region')[1], { sound: 2, version: 2, wav: '/out/v2.wav', operation: 'inpaint' });
    d.send(0, 'undo', 1);
    soundReply(d, lastOsc(d, '/notono/sound/undo')[1], { sound: 2, version: 1 });
    d.scheduler.flush();
    same(creates(live).map((c) => c.args[0]), [WAV, '/out/v2.wav']);
    same([d.context.current.sound, d.context.current.version], [2, 1]);
    same(d.sent(VIEW).filter((x) => x[0] === 'grid' && x[1] === 'spectrogram').pop(),
        ['grid', 'spectrogram', PNG]);
};

cases.midi_triggered_render_gets_a_clip = () => {
    const { d, live } = connected({ scenes: 2 });
    soundReply(d, -1, { sound: 5, version: 3, operation: 'inpaint' });
    d.scheduler.flush();
    assert.strictEqual(creates(live).length, 1);
    assert.strictEqual(d.context.current.sound, 5);
};

cases.renders_before_live_ready_wait = () => {
    const { d, live } = device({ scenes: 2 });
    soundReply(d, -1, { sound: 1 });
    d.scheduler.flush();
    assert.strictEqual(live.calls.length, 0, 'no Live API before live.thisdevice');
    d.send(0, 'live_ready');
    d.scheduler.flush();
    assert.strictEqual(creates(live).length, 1);
};

cases.error_reply_in_words = () => {
    const { d } = connected();
    soundReply(d, generateOnce(d), { sound: 1 });
    d.send(0, 'inpaint', 1);
    const id = lastOsc(d, '/notono/inpaint/region')[1];
    d.send(1, '/notono/error', id, 'bad_value', 'region rows 30..33 is outside the top map');
    assert.strictEqual(statusText(d), 'Error (inpaint): region rows 30..33 is outside the top map');
};

cases.progress_shows_stage = () => {
    const { d } = connected();
    const id = generateOnce(d);
    d.send(1, '/notono/progress', id, 0.5, 'sampling');
    assert.strictEqual(statusText(d), 'generate: sampling 50%');
};

cases.ports_reaim_udp_objects = () => {
    const { d } = connected();
    d.send(0, 'daemon_port', 7500);
    same(d.sent(OSC)[0], ['port', 7500]);
    assert.strictEqual(d.context.link.state, 'connecting');
    assert.strictEqual(lastOsc(d, '/notono/hello')[2], 7401);
};

cases.deleting_the_device_says_bye = () => {
    const { d } = connected();
    d.send(0, 'notifydeleted');
    assert.strictEqual(lastOsc(d, '/notono/bye').length, 2);
    d.clearOutlets();
    d.scheduler.tick();
    assert.strictEqual(d.sent(OSC).length, 0, 'the heartbeat stopped');
};

cases.internal_functions_are_not_messages = () => {
    const { d, live } = connected({ scenes: 2 });
    d.send(0, 'placeClip', 'x');              // reaches anything(), which only posts a warning
    d.scheduler.flush();
    assert.strictEqual(creates(live).length, 0);
    assert.match(d.posts.pop(), /unknown message placeClip/);
};

cases.grid_draws_and_maps_cells = () => {
    const grid = loadGrid([200, 136]);
    const c = grid.context;
    same(c.cellAt(0, 0, 200, 136, 'top'), [0, 31]);
    same(c.cellAt(199, 135, 200, 136, 'top'), [3, 0]);
    same(c.cellAt(199, 135, 200, 136, 'bottom'), [7, 0]);
    same(c.cellAt(-5, 500, 200, 136, 'bottom'), [0, 0]);
    const png = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'notono ')), 'a b.png');
    writePng(png, 64, 32);
    grid.send(0, 'spectrogram', png);
    grid.send(0, 'setlayer', 'bottom');
    grid.send(0, 'setregion', 2, 8, 4, 16);
    grid.context.paint();
    const ops = c.mgraphics.calls.map((x) => x[0]);
    assert.ok(ops.includes('image_surface_draw'));
    assert.ok(ops.includes('rectangle'));
};

// --- run ---------------------------------------------------------------------------------------

function constants() {
    const { d } = device();
    const c = d.context;
    return {
        FAMILIES: c.FAMILIES, PITCH_MIN: c.PITCH_MIN, PITCH_MAX: c.PITCH_MAX, LAYER_SHAPES: c.LAYER_SHAPES,
        DEFAULT_DAEMON_PORT: c.DEFAULT_DAEMON_PORT, DEFAULT_REPLY_PORT: c.DEFAULT_REPLY_PORT,
        DEFAULT_DAEMON_HOST: c.DEFAULT_DAEMON_HOST, ADDRESS: c.ADDRESS, TOP_P: c.TOP_P,
        GUIDANCE_CHOICES: c.GUIDANCE_CHOICES,
        ERASE_DB: c.ERASE_DB, MIN_LIVE_VERSION: c.MIN_LIVE_VERSION, inlets: c.inlets, outlets: c.outlets,
        DAEMON_REQUEST_ID: c.DAEMON_REQUEST_ID,
    };
}

const results = runCases(cases);
const oscSent = [];
for (const d of devices) {
    for (const [index, m] of d.history) if (index === OSC && String(m[0]).startsWith('/')) oscSent.push(m);
}
// Every line the devices showed must fit its 444 px box (status and file lines).
const overflowing = [];
for (const d of devices) {
    for (const [index, m] of d.history) {
        if (index === VIEW && (m[0] === 'status' || m[0] === 'file') && !fits(m.slice(2).join(' '))) overflowing.push(m);
    }
}
process.stdout.write(JSON.stringify({ constants: constants(), cases: results, osc_sent: oscSent, overflowing }));
