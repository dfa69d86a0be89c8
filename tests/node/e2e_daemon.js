// End to end: the device's JavaScript talks to a real running daemon over real UDP, through
// stand-ins for [udpsend] and [udpreceive] that carry exactly the OSC messages the Max objects
// would. The set is saved (Song.file_path names a real .als), so renders go into its project. It
// generates (with variations), selects a region on the grid, inpaints it, drops a copy of its first
// clip's file back (Live's Collect All and Save makes such copies), and then opens the set again: a
// second device, loaded with the state the first one stored, comes back to the same sound.
//
// Usage: node tests/node/e2e_daemon.js <daemon port> <saved set .als> [timeout seconds]
// Prints one JSON document: {ok, error, creates, clips, statuses, sent, received, found, restored}.
'use strict';

const { LiveSet, loadDevice, loadGrid } = require('./max_stand_in');
const { UdpSend, UdpReceive } = require('./osc');

const fs = require('fs');
const path = require('path');

const daemonPort = Number(process.argv[2]);
const setFile = process.argv[3];
const timeoutMs = 1000 * Number(process.argv[4] || 50);
const started = Date.now();

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor(what, predicate, device) {
    while (!predicate()) {
        const last = device.context.lastStatus;
        if (/^Error/.test(last)) throw new Error(`${what}: the device reported: ${last}`);
        if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}; status: ${last}`);
        await sleep(20);
    }
}

async function main() {
    // One audio track; its first slot already holds a clip that must survive.
    const live = new LiveSet({ scenes: 3, requireFiles: true, highlighted: [0, 0], filePath: setFile,
                               tracks: [{ name: 'NOTONO', clips: { 0: '/existing/loop.wav' } }] });
    const device = loadDevice({ live, timers: 'real' });
    const sender = new UdpSend('127.0.0.1', 7400);
    const receiver = new UdpReceive(0, (address, args) => device.send(1, address, ...args));
    await receiver.ready;
    // The patch wires outlet 0 to [udpsend] and outlet 1 to [udpreceive].
    device.onOutlet((index, message) => {
        if (index === 0) sender.message(message);
        else if (index === 1 && message[0] === 'port' && Number(message[1]) !== receiver.port) {
            throw new Error(`the device moved its reply port to ${message[1]}, the harness cannot follow`);
        }
    });
    const result = { ok: false };
    try {
        // Live restores the stored port parameters before live.thisdevice bangs.
        device.send(0, 'daemon_port', daemonPort);
        device.send(0, 'reply_port', receiver.port);
        device.send(0, 'live_ready');
        await waitFor('the hello reply', () => device.context.link.state === 'connected', device);

        device.send(0, 'pitch', 60);
        device.send(0, 'family', 6);           // organ
        device.send(0, 'variations', 2);
        device.send(0, 'generate', 1);
        const creates = () => live.calls.filter((c) => c.op === 'call' && c.name === 'create_audio_clip');
        await waitFor('two generated clips', () => creates().length >= 2, device);

        // Click and drag on the grid (200 x 136 px, top map): columns 1-2, the lowest 8 rows.
        const grid = loadGrid([200, 136]);
        grid.send(0, 'onclick', 60, 136 - 1);
        grid.send(0, 'ondrag', 140, 136 - 8 * 4.25 + 1, 0);
        const selection = grid.sent(0)[0];
        device.send(0, ...selection);
        device.send(0, 'inpaint', 1);
        await waitFor('the inpainted clip', () => creates().length >= 3, device);
        await sleep(50);   // the clip's name/colour calls follow create_audio_clip in the same task

        // A copy of the first clip's file, as Collect All and Save leaves it, dropped on the device:
        // found in the history by its content; nothing is encoded and no clip is made.
        const first = live.tracks[0].slots[1].file_path;
        const copy = path.join(path.dirname(setFile), 'Samples', 'Imported', 'collected copy.wav');
        fs.mkdirSync(path.dirname(copy), { recursive: true });
        fs.copyFileSync(first, copy);
        const before = creates().length;
        device.send(0, 'drop', copy);
        await waitFor('the dropped clip found', () => /^Found /.test(device.context.lastStatus), device);
        result.found = { current: device.context.current, status: device.context.lastStatus,
                         createsAfter: creates().length - before };

        // The set is opened again: a new device gets the stored "NOTONO State" before live.thisdevice.
        const stored = device.history.filter(([i, m]) => i === 2 && m[0] === 'state').pop()[1].slice(2);
        const reopened = new LiveSet({ scenes: 4, requireFiles: true, filePath: setFile });
        const again = loadDevice({ live: reopened, timers: 'real' });
        const receiver2 = new UdpReceive(0, (address, args) => again.send(1, address, ...args));
        await receiver2.ready;
        const sender2 = new UdpSend('127.0.0.1', daemonPort);
        again.onOutlet((index, message) => { if (index === 0) sender2.message(message); });
        try {
            again.send(0, 'daemon_port', daemonPort);
            again.send(0, 'reply_port', receiver2.port);
            again.send(0, 'restore_state', ...stored);
            again.send(0, 'live_ready');
            await waitFor('the saved sound restored', () => /^Back to /.test(again.context.lastStatus), again);
            result.restored = { stored, current: again.context.current, status: again.context.lastStatus,
                                creates: reopened.calls.filter((c) => c.name === 'create_audio_clip').length };
        } finally {
            again.send(0, 'notifydeleted');
            await sleep(20);
            again.stop();
            sender2.close();
            receiver2.close();
        }

        result.ok = true;
        result.selection = selection;
        result.creates = creates().map((c) => ({ path: c.path, args: c.args }));
        result.clips = live.tracks[0].slots;
        result.errors = live.errors;
    } catch (error) {
        result.error = String(error && error.stack || error);
    } finally {
        result.statuses = device.sent(2).filter((m) => m[0] === 'status').map((m) => m[2]);
        result.sent = sender.sent;
        result.received = receiver.received;
        device.send(0, 'notifydeleted');   // says /notono/bye, as when the device is removed
        await sleep(20);
        device.stop();
        sender.close();
        receiver.close();
    }
    process.stdout.write(JSON.stringify(result));
}

main();
