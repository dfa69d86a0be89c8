// NOTONO Live: starts `notono-live serve` for the device when no daemon answers (Node for Max,
// [node.script], part of Max for Live; modern JavaScript is fine here, unlike the classic `js`).
//
// Messages from notono.js (through the patch):
//   start <port> <keep 0|1> [executable]   start a daemon on 127.0.0.1:<port>, unless this script
//                                          already started one that still runs
//   free_port                              find a UDP port nothing listens on, for the replies
// Messages to notono.js (outlet 0):
//   daemon_log <line>          each line the daemon prints while it starts (its ready line included)
//   daemon_started <pid> <executable>
//   daemon_missing <why>       no executable found, or it could not be started
//   daemon_exited <code>
//   reply_port_found <port>
//
// The daemon runs detached from this process, so closing Live's set does not kill it mid-render.
// Unless `keep` is 1 it is started with --exit-when-unused, so it stops by itself once the last
// device has said bye or stopped pinging; a daemon another device started is reused, not restarted.
'use strict';

const childProcess = require('child_process');
const dgram = require('dgram');
const fs = require('fs');
const os = require('os');
const path = require('path');
const maxApi = require('max-api');

const EXE = process.platform === 'win32' ? 'notono-live.exe' : 'notono-live';
const UNUSED_SECONDS = 10;     // how long a daemon this script started outlives its last device
const LOG_LINES = 40;          // start-up lines passed on to the device, at most

let child = null;

// Folders an installed `notono-live` is usually in, beyond PATH: Live started from the Dock or the
// Start menu does not see the PATH of a shell.
function usualFolders() {
    const home = os.homedir();
    const folders = [path.join(home, '.local', 'bin')];                   // pipx, pip --user on Linux
    if (process.platform === 'darwin') {
        folders.push('/opt/homebrew/bin', '/usr/local/bin');
        const pythonUser = path.join(home, 'Library', 'Python');          // pip --user on macOS
        for (const version of safeList(pythonUser)) folders.push(path.join(pythonUser, version, 'bin'));
    } else if (process.platform === 'win32') {
        const roaming = process.env.APPDATA || path.join(home, 'AppData', 'Roaming');
        const local = process.env.LOCALAPPDATA || path.join(home, 'AppData', 'Local');
        for (const base of [path.join(roaming, 'Python'), path.join(local, 'Programs', 'Python')]) {
            for (const version of safeList(base)) folders.push(path.join(base, version, 'Scripts'));
        }
    }
    return folders;
}

function safeList(folder) {
    try {
        return fs.readdirSync(folder);
    } catch (error) {
        return [];
    }
}

// The executable to run: the one set in the device, else the first on PATH, else a usual folder.
function findExecutable(chosen) {
    if (chosen) {
        return fs.existsSync(chosen) ? { path: chosen } : { error: `no file ${chosen} (set in the device)` };
    }
    const onPath = (process.env.PATH || '').split(path.delimiter).filter(Boolean);
    for (const folder of onPath.concat(usualFolders())) {
        const candidate = path.join(folder, EXE);
        if (fs.existsSync(candidate)) return { path: candidate };
    }
    return { error: `no ${EXE} on PATH or in ${usualFolders().join(', ')}: install NOTONO Live (see its README) ` +
                    'or start notono-live serve yourself' };
}

function start(port, keep, chosen) {
    if (child && child.exitCode === null) return;    // ours is still starting or running
    const found = findExecutable(chosen ? String(chosen) : '');
    if (found.error) {
        maxApi.outlet('daemon_missing', found.error);
        return;
    }
    const args = ['serve', '--port', String(Number(port))];
    if (!Number(keep)) args.push('--exit-when-unused', String(UNUSED_SECONDS));
    let spawned;
    try {
        spawned = childProcess.spawn(found.path, args, { detached: true, windowsHide: true,
                                                         stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (error) {
        maxApi.outlet('daemon_missing', `${found.path} could not be started: ${error.message}`);
        return;
    }
    child = spawned;
    let lines = 0;
    const forward = (stream) => {
        let buffered = '';
        stream.setEncoding('utf8');
        stream.on('data', (text) => {
            buffered += text;
            let end;
            while ((end = buffered.indexOf('\n')) >= 0) {
                const line = buffered.slice(0, end).trim();
                buffered = buffered.slice(end + 1);
                if (line && lines++ < LOG_LINES) maxApi.outlet('daemon_log', line);
            }
        });
    };
    forward(spawned.stdout);
    forward(spawned.stderr);
    spawned.on('error', (error) => maxApi.outlet('daemon_missing', `${found.path}: ${error.message}`));
    spawned.on('exit', (code, signal) => {
        maxApi.outlet('daemon_exited', code === null ? String(signal) : code);
        if (child === spawned) child = null;
    });
    spawned.unref();
    maxApi.outlet('daemon_started', spawned.pid, found.path);
}

// A port the system hands out as free; closed again at once, for [udpreceive] to take.
function freePort() {
    const socket = dgram.createSocket('udp4');
    socket.on('error', (error) => {
        maxApi.outlet('daemon_missing', `no free UDP port for the replies: ${error.message}`);
        socket.close();
    });
    socket.bind(0, '127.0.0.1', () => {
        const { port } = socket.address();
        socket.close(() => maxApi.outlet('reply_port_found', port));
    });
}

maxApi.addHandler('start', start);
maxApi.addHandler('free_port', freePort);

module.exports = { findExecutable, usualFolders };
