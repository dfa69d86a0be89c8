// End to end: the device finds no daemon, has notono_daemon.js start a real `notono-live serve`,
// connects, generates into a clip, and closes (bye). Or, with a daemon already running, reuses it.
// notono.js and notono_daemon.js run in this one Node process, wired as the patch wires them;
// `max-api` is the stand-in in tests/node/modules (NODE_PATH).
//
// With --auto-reply the device's Reply Port is 0: notono_daemon.js finds it a free one, and the
// harness listens where the device tells [udpreceive] to (several of these run side by side).
//
// Usage: node tests/node/e2e_autostart.js <daemon port> [timeout seconds] [--auto-reply]
// Prints one JSON document: {ok, error, started, missing, statuses, creates, replyPort, sounds}.
'use strict';

const path = require('path');
const maxApi = require('max-api');
const { LiveSet, loadDevice } = require('./max_stand_in');
const { UdpSend, UdpReceive } = require('./osc');

const daemonPort = Number(process.argv[2]);
const timeoutMs = 1000 * Number(process.argv[3] || 120);
const autoReply = process.argv.includes('--auto-reply');
const started = Date.now();

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

async function main() {
    const live = new LiveSet({ scenes: 2 });
    const device = loadDevice({ live, timers: 'real' });
    require(path.resolve(__dirname, '..', '..', 'max_for_live', 'notono_daemon.js'));
    const result = { ok: false, started: [], missing: [], statuses: [], sounds: [] };
    const sender = new UdpSend('127.0.0.1', daemonPort);
    const heard = (address, args) => {
        if (address === '/notono/sound') result.sounds.push(args[1]);
        device.send(1, address, ...args);
    };
    let receiver = autoReply ? null : new UdpReceive(0, heard);
    if (receiver) await receiver.ready;
    maxApi._onOutlet((atoms) => {
        if (atoms[0] === 'daemon_started') result.started.push(atoms[1]);
        if (atoms[0] === 'daemon_missing') result.missing.push(atoms.slice(1).join(' '));
        device.send(0, ...atoms);
    });
    device.onOutlet((index, message) => {
        if (index === 0 && String(message[0]).startsWith('/')) sender.message(message);
        if (index === 2 && message[0] === 'status') result.statuses.push(message.slice(2).join(' '));
        if (index === 3) maxApi._deliver(...message);
        if (index === 1 && message[0] === 'port' && autoReply && !receiver) {   // [udpreceive] takes the port
            receiver = new UdpReceive(Number(message[1]), heard);
            result.replyPort = Number(message[1]);
        }
    });
    const waitFor = async (what, predicate) => {
        while (!predicate()) {
            if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
            await sleep(50);
        }
    };
    try {
        device.send(0, 'daemon_port', daemonPort);
        device.send(0, 'reply_port', autoReply ? 0 : receiver.port);
        device.send(0, 'live_ready');
        await waitFor('the hello reply', () => device.context.link.state === 'connected');
        device.send(0, 'generate', 1);
        const creates = () => live.calls.filter((c) => c.op === 'call' && c.name === 'create_audio_clip');
        await waitFor('a generated clip', () => creates().length >= 1);
        result.creates = creates().map((c) => c.args);
        device.send(0, 'notifydeleted');     // the device closes: bye
        await sleep(300);
        result.ok = true;
    } catch (error) {
        result.error = String(error && error.stack || error);
    } finally {
        device.stop();
        sender.close();
        if (receiver) receiver.close();
    }
    process.stdout.write(JSON.stringify(result));
    process.exit(0);
}

main();
