// The built device as Live loads it (tests/node/live_device.js): its Live parameters, what the
// script writes into them, the lines it shows, and clips made from paths with spaces.
// Prints one JSON document {"cases": {name: {ok, error}}}; tests/test_device.py runs it.
// Usage: node tests/node/device_patch_cases.js [device.amxd]
'use strict';

const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { LiveSet, loadGrid } = require('./max_stand_in');
const { LiveDevice } = require('./live_device');
const { fits } = require('./view_font');
const { writePng } = require('./png');
const { runCases } = require('./run_cases');

const FILE = process.argv[2];
const SUPPORT = '/Users/me/Library/Application Support/NOTONO Live/samples';

// A loaded device; its Reply Port is 7401 unless `saved` says otherwise (0 is automatic).
function loaded(liveSpec, saved) {
    const live = new LiveSet(liveSpec || {});
    const device = new LiveDevice({ live, file: FILE || undefined }).load({ 'Reply Port': 7401, ...saved });
    return { device, d: device.d, live };
}

function connect(d) {
    const hello = d.sent(0).filter((m) => m[0] === '/notono/hello').pop();
    assert.ok(hello, 'no hello after live.thisdevice');
    d.send(1, '/notono/hello', hello[1], '0.1.0', 'notono-lite', 'cpu', 0, '/tmp/out', 44100, 1);
    return hello;
}

function lastRequest(d, address) {
    const all = d.sent(0).filter((m) => m[0] === address);
    assert.ok(all.length, `no ${address} sent`);
    return all[all.length - 1];
}

function sound(d, requestId, o) {
    d.send(1, '/notono/sound', requestId, o.sound, o.version, o.wav, o.png || '', o.pitch, o.family, o.label,
        o.parent || 0, o.operation || 'generate', 44100);
}

// Generate once and answer with the daemon's render of an organ C3 at `wav`; run deferred tasks.
function generateOrgan(d, wav) {
    d.send(0, 'generate', 1);
    sound(d, lastRequest(d, '/notono/generate')[1], { sound: 1, version: 1, wav, pitch: 60, family: 'organ',
        label: 'organ C3 #1 v1' });
    d.scheduler.flush();
}

function creates(live) {
    return live.calls.filter((c) => c.op === 'call' && c.name === 'create_audio_clip');
}

const cases = {};

// Live's Int type holds 0-255: ports stored in such a parameter would come back as 255.
cases.ports_survive_live_parameter_rules = () => {
    const { device, d } = loaded();
    assert.strictEqual(device.values['Daemon Port'], 7400);
    assert.strictEqual(device.values['Reply Port'], 7401);
    assert.strictEqual(device.parameters['Reply Port'].valueof.parameter_initial[0], 0, 'automatic by default');
    assert.strictEqual(device.sendPort, 7400, '[udpsend] aims at the daemon port');
    assert.strictEqual(device.receivePort, 7401, '[udpreceive] listens on the reply port');
    assert.strictEqual(connect(d)[2], 7401, 'hello announces the reply port');
    device.turn('Daemon Port', 9000);
    device.turn('Reply Port', 9001);
    assert.strictEqual(device.sendPort, 9000);
    assert.strictEqual(device.receivePort, 9001);
    const reopened = loaded({}, { 'Daemon Port': 12000, 'Reply Port': 12001 }).device;
    assert.deepStrictEqual([reopened.sendPort, reopened.receivePort], [12000, 12001], 'saved ports come back');
};

// Reply Port 0: the device asks notono_daemon.js for a free port and says hello only once it has one;
// with no answer in three heartbeats it falls back to 7401.
cases.automatic_reply_port = () => {
    const { device, d } = loaded({}, { 'Reply Port': 0 });
    const asks = () => d.sent(3).filter((m) => m[0] === 'free_port').length;
    assert.strictEqual(asks(), 1);
    assert.strictEqual(d.sent(0).filter((m) => m[0] === '/notono/hello').length, 0, 'no hello without a port');
    d.send(0, 'reply_port_found', 50123);
    assert.strictEqual(device.receivePort, 50123);
    assert.strictEqual(connect(d)[2], 50123, 'hello announces the port found');
    d.send(0, 'reply_port_found', 50999);                  // a late second answer changes nothing
    assert.strictEqual(device.receivePort, 50123);

    const silent = loaded({}, { 'Reply Port': 0 });
    for (let i = 0; i < 3; i++) silent.d.scheduler.tick();
    assert.strictEqual(silent.d.sent(3).filter((m) => m[0] === 'free_port').length, 3);
    assert.strictEqual(silent.device.receivePort, 7400 + 1);
    assert.strictEqual(connect(silent.d)[2], 7401);
};

// A session of edits writes no parameter the user sets (Live's undo history, automation): only
// "NOTONO State", once per change of the current sound.
cases.script_writes_only_its_state_parameter = () => {
    const { device, d } = loaded({ scenes: 8 }, { Layer: 1, 'Region X': 6, 'Region Width': 4 });
    connect(d);
    d.send(0, 'generate', 1);
    sound(d, lastRequest(d, '/notono/generate')[1], { sound: 1, version: 1, wav: '/out/a.wav', pitch: 48,
        family: 'brass', label: 'brass C2 #1 v1' });
    d.scheduler.flush();
    d.send(0, 'region', 1, 0, 2, 8);            // a drag on the grid
    device.turn('Layer', 0);                     // converts the region to the top map
    device.turn('Region X', 3);
    d.send(0, 'inpaint', 1);
    const inpaint = lastRequest(d, '/notono/inpaint/region');
    assert.deepStrictEqual(inpaint.slice(2, 8), [1, 'top', 0, 3, 4, 1]);
    sound(d, inpaint[1], { sound: 1, version: 2, wav: '/out/b.wav', pitch: 48, family: 'brass',
        label: 'brass C2 #1 v2', operation: 'inpaint' });
    d.scheduler.flush();
    d.send(0, 'undo', 1);
    sound(d, lastRequest(d, '/notono/sound/undo')[1], { sound: 1, version: 1, wav: '/out/a.wav', pitch: 48,
        family: 'brass', label: 'brass C2 #1 v1' });
    d.scheduler.flush();
    assert.deepStrictEqual(device.parameterWrites, [
        ['NOTONO State', 'set', '/out/a.wav', 1, 1, 'brass C2 #1 v1'],
        ['NOTONO State', 'set', '/out/b.wav', 1, 2, 'brass C2 #1 v2'],
        ['NOTONO State', 'set', '/out/a.wav', 1, 1, 'brass C2 #1 v1'],
    ], 'the script wrote into a parameter other than its state, or the same state twice');
    assert.deepStrictEqual(device.unrouted, [], 'every view message has a display to go to');
    assert.strictEqual(device.values.Pitch, 60, 'Pitch stays what the user set');
    assert.match(device.lines.status.pop(), /^Now editing brass C2 #1 v1/);
    assert.strictEqual(device.lines.region.pop(), 'Region: top col 3, row 0-3');
};

// The set is saved and opened again: the device comes back to the same sound and version, found in
// the daemon's history by its file (no re-encode, no new clip); Undo then steps back from there.
cases.current_sound_survives_saving_and_reopening_the_set = () => {
    const first = loaded({ scenes: 4 });
    connect(first.d);
    generateOrgan(first.d, `${SUPPORT}/0001-organ-C3-v001.wav`);
    first.d.send(0, 'inpaint', 1);
    sound(first.d, lastRequest(first.d, '/notono/inpaint/region')[1], { sound: 1, version: 2,
        wav: `${SUPPORT}/0001-organ-C3-v002.wav`, png: `${SUPPORT}/0001-organ-C3-v002.png`, pitch: 60,
        family: 'organ', label: 'organ C3 #1 v2', operation: 'inpaint' });
    first.d.scheduler.flush();
    const kept = first.device.stored();
    assert.deepStrictEqual(kept['NOTONO State'], [`${SUPPORT}/0001-organ-C3-v002.wav`, 1, 2, 'organ C3 #1 v2']);
    assert.strictEqual(kept['Drop File'], undefined, 'a Hidden parameter is not saved');

    // Reopened: Live restores the parameters before live.thisdevice; nothing is sent before the hello.
    const live = new LiveSet({ scenes: 4 });
    const device = new LiveDevice({ live, file: FILE || undefined }).load(kept);
    const d = device.d;
    assert.strictEqual(d.sent(0).filter((m) => m[0] === '/notono/sound/find').length, 0);
    assert.match(device.lines.file.pop(), /0001-organ-C3-v002\.wav$/, 'the file line names the saved sound at once');
    connect(d);
    const find = lastRequest(d, '/notono/sound/find');
    assert.deepStrictEqual(find.slice(2), [`${SUPPORT}/0001-organ-C3-v002.wav`]);
    sound(d, find[1], { sound: 1, version: 2, wav: `${SUPPORT}/0001-organ-C3-v002.wav`,
        png: `${SUPPORT}/0001-organ-C3-v002.png`, pitch: 60, family: 'organ', label: 'organ C3 #1 v2',
        operation: 'inpaint' });
    d.send(1, '/notono/done', find[1], 1);
    d.scheduler.flush();
    assert.strictEqual(creates(live).length, 0, 'a restored sound already has its clip');
    assert.strictEqual(d.sent(0).filter((m) => m[0] === '/notono/encode').length, 0, 'nothing is re-encoded');
    assert.deepStrictEqual(d.sent(2).filter((m) => m[0] === 'grid' && m[1] === 'spectrogram').pop(),
        ['grid', 'spectrogram', `${SUPPORT}/0001-organ-C3-v002.png`], 'the grid shows the saved sound');
    assert.match(device.lines.status.pop(), /^Back to organ C3 #1 v2, as the set saved it/);
    assert.deepStrictEqual(device.parameterWrites, [], 'restoring writes the state back: an undo step for nothing');
    d.send(0, 'undo', 1);
    assert.deepStrictEqual(lastRequest(d, '/notono/sound/undo').slice(2), [1]);

    // A daemon that never had it (another computer): said plainly, and nothing is encoded.
    const elsewhere = new LiveDevice({ live: new LiveSet({}), file: FILE || undefined }).load(kept);
    connect(elsewhere.d);
    const lost = lastRequest(elsewhere.d, '/notono/sound/find');
    elsewhere.d.send(1, '/notono/error', lost[1], 'not_found', 'not a render in this daemon\'s history');
    assert.match(elsewhere.lines.status.pop(), /^This set's sound \(organ C3 #1 v2\) is not in this daemon's history/);
    assert.strictEqual(elsewhere.d.sent(0).filter((m) => m[0] === '/notono/encode').length, 0);
};

// Live's own Undo steps "NOTONO State" back: the device follows to that sound, without a new clip.
cases.live_undo_of_the_state_selects_the_earlier_sound = () => {
    const { device, d, live } = loaded({ scenes: 4 });
    connect(d);
    generateOrgan(d, '/out/one.wav');
    d.send(0, 'generate', 1);
    sound(d, lastRequest(d, '/notono/generate')[1], { sound: 2, version: 1, wav: '/out/two.wav', pitch: 60,
        family: 'organ', label: 'organ C3 #2 v1' });
    d.scheduler.flush();
    assert.strictEqual(creates(live).length, 2);
    device.recall('NOTONO State', ['/out/one.wav', 1, 1, 'organ C3 #1 v1']);
    const find = lastRequest(d, '/notono/sound/find');
    assert.deepStrictEqual(find.slice(2), ['/out/one.wav']);
    sound(d, find[1], { sound: 1, version: 1, wav: '/out/one.wav', pitch: 60, family: 'organ', label: 'organ C3 #1 v1' });
    d.scheduler.flush();
    assert.strictEqual(creates(live).length, 2, 'no clip for a sound that has one');
    assert.strictEqual(d.context.current.sound, 1);
};

// A path with spaces (every macOS path under Application Support) reaches Live as one atom, and
// the status and file lines fit their boxes.
cases.paths_with_spaces_reach_create_audio_clip = () => {
    const { device, d, live } = loaded({ scenes: 4 });
    connect(d);
    d.send(0, 'generate', 1);
    const wav = `${SUPPORT}/0001-synth lead-C3-v001 with a long name for a narrow box.wav`;
    sound(d, lastRequest(d, '/notono/generate')[1], { sound: 1, version: 1, wav, pitch: 60,
        family: 'synth_lead', label: 'synth lead C3 #1 v1' });
    d.scheduler.flush();
    assert.deepStrictEqual(creates(live).map((c) => c.args), [[wav]]);
    assert.strictEqual(live.clipAt(0, 0).file_path, wav);
    const file = device.lines.file.pop();
    assert.ok(file.startsWith('File: /Users/me') && file.endsWith('narrow box.wav'), file);
    assert.ok(fits(file), `${file} is wider than the file line`);
    assert.deepStrictEqual(device.overflowing(), []);
    assert.ok(d.posts.some((p) => p.includes(wav)), 'the whole path is in the Max window');
};

// Live may list a new clip only after the event that made it: the device looks once more.
cases.new_clip_found_on_the_second_lookup = () => {
    const { d, live } = loaded({ scenes: 2, listsNewClipsLate: true });
    connect(d);
    generateOrgan(d, '/out/a.wav');
    assert.strictEqual(creates(live).length, 1);
    assert.deepStrictEqual(live.clipAt(0, 0), { file_path: '/out/a.wav', name: 'organ C3 #1 v1',
        color: 0x9650DC, warping: 0, looping: 0 });
    assert.match(d.context.lastStatus, /organ C3 #1 v1 \u2192 track 1, slot 1/);
};

cases.clip_never_made_is_reported_after_the_retry = () => {
    const { d, live } = loaded({ scenes: 2, requireFiles: true });
    connect(d);
    generateOrgan(d, '/no/such/file.wav');
    assert.strictEqual(live.errors.length, 1, 'Live refused the file');
    assert.match(d.context.lastStatus, /^Live made no clip in track 1, slot 1/);
    const lookups = live.calls.filter((c) => c.op === 'get' && /clip_slots 0 clip$/.test(c.path));
    assert.strictEqual(lookups.length, 0, 'an invalid clip is never read from');
};

// A spectrogram Max cannot read leaves the grid drawn, with no scale by zero.
cases.unreadable_spectrogram_keeps_the_grid = () => {
    const grid = loadGrid([200, 136]);
    grid.send(0, 'spectrogram', '/nowhere/missing picture.png');
    grid.context.paint();
    const ops = grid.context.mgraphics.calls;
    assert.ok(!ops.some((c) => c[0] === 'image_surface_draw' || c[0] === 'scale'), JSON.stringify(ops.slice(0, 5)));
    assert.ok(ops.filter((c) => c[0] === 'line_to').length >= 3 + 31, 'grid lines are drawn');
    assert.ok(ops.every((c) => c.slice(1).every((v) => typeof v !== 'number' || Number.isFinite(v))));

    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'notono grid ')), 'spectrum one.png');
    writePng(file, 100, 68);
    grid.context.mgraphics.calls.length = 0;
    grid.send(0, 'spectrogram', file);
    grid.context.paint();
    const drawn = grid.context.mgraphics.calls;
    assert.deepStrictEqual(drawn.find((c) => c[0] === 'scale'), ['scale', 2, 2]);
    assert.ok(drawn.some((c) => c[0] === 'image_surface_draw'));
};

// The daemon's notices about a render (off pitch, transposed, ...) reach the status line.
cases.notices_reach_the_status_line = () => {
    const { device, d } = loaded({ scenes: 2 });
    connect(d);
    generateOrgan(d, '/out/a.wav');
    // a generated sound's pitch check runs after the reply: its notice follows /notono/done
    const id = lastRequest(d, '/notono/generate')[1];
    d.send(1, '/notono/done', id, 1);
    d.send(1, '/notono/notice', id, 1, 1, 'pitch_missed',
        'not at its label\'s pitch: pYIN hears 65.4 Hz, -1200 cents from C3');
    assert.strictEqual(d.context.lastStatus, 'organ C3 #1 v1 \u2192 track 1, slot 1: pitch missed (see the Max window).');
    assert.ok(d.posts.some((line) => line.includes('pYIN hears 65.4 Hz')));
    assert.deepStrictEqual(device.overflowing(), []);
};

// No daemon answers: after two unanswered hellos the device asks its node.script, once, to start one
// on the daemon port; not with Auto start off, and not for a daemon on another computer.
cases.silence_starts_a_daemon_once = () => {
    const starts = (setup, ticks = 6) => {
        const { device, d } = loaded();
        const asked = [];
        d.onOutlet((index, message) => { if (index === 3) asked.push(message); });
        setup(device, d);
        for (let i = 0; i < ticks; i++) d.scheduler.tick();
        return { asked, d };
    };
    const plain = starts(() => {});
    assert.deepStrictEqual(plain.asked, [['start', 7400, 0]]);
    assert.ok(plain.d.context.lastStatus.length > 0);
    const kept = starts((device, d) => {
        device.turn('Keep Daemon', 1);
        d.send(0, 'daemon_executable', '/Applications/My', 'Tools/notono-live');
    });
    assert.deepStrictEqual(kept.asked, [['start', 7400, 1, '/Applications/My Tools/notono-live']]);
    assert.deepStrictEqual(starts((device) => device.turn('Start Daemon', 0)).asked, []);
    assert.deepStrictEqual(starts((device, d) => d.send(0, 'daemon_host', '192.0.2.7')).asked, []);
    // connected, two heartbeats with their pongs still out: the daemon is not lost yet
    const answered = starts((device, d) => connect(d), 2);
    assert.deepStrictEqual(answered.asked, [], 'a daemon that answers is reused');
};

process.stdout.write(JSON.stringify({ cases: runCases(cases) }));
