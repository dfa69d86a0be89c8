// The project's one stand-in: Max's `js` globals and Live's object model, for running the device's
// JavaScript under Node. Ableton Live cannot run on a test machine, so this models only what the
// device touches, as thinly as the real interfaces: LiveAPI(callback, path) with id, path,
// unquotedpath, get, set, call, getcount; Task with schedule/repeat/cancel; outlet, post,
// messagename, inlet, arrayfromargs; and, for the grid script, an mgraphics that records calls.
// Every Live API operation is recorded in `live.calls` so tests can assert on what the device did.
'use strict';

const fs = require('fs');
const path = require('path');
const vm = require('vm');

// --- Live set ------------------------------------------------------------------------------

class LiveSet {
    // spec: {version: [12, 1, 0], scenes: 4, tracks: [{name, kind: 'audio'|'midi'|'group',
    //        frozen, clips: {slotIndex: filePath}}], device: 'live_set tracks 0' (the device's
    //        track), highlighted: [track, slot] | null, selectedScene: 0, requireFiles: false,
    //        listsNewClipsLate: false (a clip made by create_audio_clip is not found by the very
    //        next lookup, only by later ones, as Live can do within one event),
    //        filePath: '' (Song.file_path: the saved set's file, '' while unsaved), tempo: 120,
    //        signature: [4, 4], refuses: ['Drum Rack'] (device names insert_device refuses, as a
    //        Live that cannot insert racks does), endMarker: true (false: a clip warped on lists only
    //        its start marker and the hidden one)}
    constructor(spec) {
        this.version = spec.version || [12, 1, 0];
        this.scenes = spec.scenes || 8;
        this.tracks = (spec.tracks || [{ name: 'Audio', kind: 'audio' }]).map((t) => this.newTrack(t));
        this.filePath = spec.filePath || '';
        this.tempo = spec.tempo || 120;
        this.signature = spec.signature || [4, 4];
        this.refuses = spec.refuses || [];
        this.endMarker = spec.endMarker !== false;
        this.returnTracks = spec.returnTracks || 0;
        this.device = spec.device || 'live_set tracks 0';
        this.highlighted = spec.highlighted || null;
        this.selectedScene = spec.selectedScene || 0;
        this.requireFiles = !!spec.requireFiles;
        this.listsNewClipsLate = !!spec.listsNewClipsLate;
        this.unlisted = new Set();   // clip paths made by create_audio_clip and not yet looked up
        this.calls = [];
        this.errors = [];
    }

    newTrack(t) {
        return {
            name: t.name || 'Audio',
            kind: t.kind || 'audio',
            frozen: !!t.frozen,
            slots: Array.from({ length: this.scenes }, (_, i) =>
                (t.clips && t.clips[i]) ? LiveSet.newClip(t.clips[i]) : null),
            devices: [],
        };
    }

    static newClip(filePath) {
        // Live names a new clip after its file and warps long samples by default. Renders are 4 s at
        // 44.1 kHz here; warp_markers are made when warping is turned on.
        const clip = { file_path: filePath, name: path.basename(filePath).replace(/\.[^.]*$/, ''),
                       color: 0x969696, warping: 1, looping: 0 };
        // read only through the API (not enumerable, so a clip compares by what the device set)
        for (const [key, value] of Object.entries({ sample_length: 4 * 44100, sample_rate: 44100, markers: null,
                                                     end_marker: 0, loop_end: 0 })) {
            Object.defineProperty(clip, key, { value, writable: true, enumerable: false });
        }
        return clip;
    }

    since(version, what) {
        const [major, minor, bugfix] = this.version;
        const [a, b, c] = version;
        const ok = major !== a ? major > a : minor !== b ? minor > b : bugfix >= c;
        if (!ok) this.fail(`${what}: not in Live ${this.version.join('.')} (needs ${version.join('.')})`);
        return ok;
    }

    // Canonical path and the object it names, or null.
    resolve(rawPath) {
        let p = String(rawPath || '').replace(/"/g, '').trim().replace(/\s+/g, ' ');
        if (p === 'live_set view highlighted_clip_slot') {
            if (!this.highlighted) return null;
            p = `live_set tracks ${this.highlighted[0]} clip_slots ${this.highlighted[1]}`;
        } else if (p === 'live_set view selected_scene') {
            p = `live_set scenes ${this.selectedScene}`;
        } else if (p === 'this_device canonical_parent') {
            // A device in a rack has a chain as parent: 'live_set tracks 1 devices 0 chains 0'.
            if (/ chains \d+$/.test(this.device)) return { path: this.device, kind: 'chain' };
            p = this.device;
        } else if (p === 'this_device') {
            return { path: `${this.device} devices 0`, kind: 'device', device: { kind: 'm4l' } };
        }
        if (p === 'live_app') return { path: p, kind: 'app' };
        if (p === 'live_set') return { path: p, kind: 'song' };
        let m = /^live_set scenes (\d+)$/.exec(p);
        if (m) return Number(m[1]) < this.scenes ? { path: p, kind: 'scene' } : null;
        m = /^live_set return_tracks (\d+)$/.exec(p);
        if (m) return Number(m[1]) < this.returnTracks ? { path: p, kind: 'return_track' } : null;
        m = /^live_set tracks (\d+)((?: devices \d+(?: chains \d+)?)+)$/.exec(p);
        if (m) return this.resolveDevice(p, this.tracks[Number(m[1])], m[2]);
        m = /^live_set tracks (\d+)(?: clip_slots (\d+)( clip)?)?$/.exec(p);
        if (!m) return null;
        const track = this.tracks[Number(m[1])];
        if (!track) return null;
        m = [m[0], m[1], undefined, m[2], m[3]];
        if (m[3] === undefined) return { path: p, kind: 'track', track };
        const slotIndex = Number(m[3]);
        if (slotIndex >= track.slots.length) return null;
        if (!m[4]) return { path: p, kind: 'clip_slot', track, slotIndex };
        const clip = track.slots[slotIndex];
        if (clip && this.unlisted.delete(p)) return null;
        return clip ? { path: p, kind: 'clip', clip } : null;
    }

    // ' devices D chains C devices E ...' below a track: a device or a rack's chain.
    resolveDevice(p, track, rest) {
        if (!track) return null;
        if (p === `${this.device} devices 0`) return { path: p, kind: 'device', device: { kind: 'm4l' } };
        let holder = track, node = null;
        const parts = rest.trim().split(' ');
        for (let i = 0; i < parts.length; i += 2) {
            const list = parts[i], index = Number(parts[i + 1]);
            const items = list === 'devices' ? holder.devices : holder.chains;
            if (!items || !items[index]) return null;
            node = items[index];
            holder = node;
        }
        return { path: p, kind: node.chains ? 'rack' : (node.in_note !== undefined ? 'chain' : 'device'), device: node };
    }

    record(entry) {
        this.calls.push(entry);
    }

    fail(message) {
        // Live reports a failed call in the Max window and the call has no effect.
        this.errors.push(message);
    }

    get(node, prop) {
        switch (node.kind) {
            case 'track': {
                const t = node.track;
                const values = {
                    name: t.name, has_audio_input: t.kind === 'midi' ? 0 : 1,
                    has_midi_input: t.kind === 'midi' ? 1 : 0, is_foldable: t.kind === 'group' ? 1 : 0,
                    is_frozen: t.frozen ? 1 : 0,
                };
                if (prop in values) return [values[prop]];
                break;
            }
            case 'clip_slot':
                if (prop === 'has_clip') return [node.track.slots[node.slotIndex] ? 1 : 0];
                break;
            case 'clip':
                if (prop === 'warp_markers') {
                    // a dict property: the js LiveAPI hands it over as JSON text
                    if (!this.since([11, 0, 0], 'get warp_markers')) return [];
                    return [JSON.stringify({ warp_markers: node.clip.markers || [] })];
                }
                if (prop in node.clip && prop !== 'markers') return [node.clip[prop]];
                break;
            case 'song': {
                if (prop === 'file_path') return this.since([11, 3, 0], 'get file_path') ? [this.filePath] : [];
                const values = { tempo: this.tempo, signature_numerator: this.signature[0],
                                 signature_denominator: this.signature[1] };
                if (prop in values) return [values[prop]];
                break;
            }
            case 'rack':
                if (prop === 'can_have_drum_pads') return [node.device.name === 'Drum Rack' ? 1 : 0];
                if (prop === 'name') return [node.device.name];
                break;
            case 'chain':
                if (prop in node.device && prop !== 'devices') return [node.device[prop]];
                break;
            default:
                break;
        }
        this.fail(`get: no property ${prop} on ${node.path}`);
        return [];
    }

    set(node, prop, value) {
        if (node.kind === 'clip' && ['name', 'color', 'warping', 'looping', 'end_marker', 'loop_end'].includes(prop)) {
            node.clip[prop] = prop === 'name' ? String(value) : Number(value);
            if (prop === 'warping' && Number(value) === 1 && !node.clip.markers) {
                // Live's own guess for a short sample: it lasts its seconds at the set's tempo; one more
                // marker, hidden, 1/32 beat after the end
                const seconds = node.clip.sample_length / node.clip.sample_rate;
                const end = seconds * this.tempo / 60;
                node.clip.markers = [{ sample_time: 0, beat_time: 0 }, { sample_time: seconds, beat_time: end },
                                     { sample_time: seconds + (60 / this.tempo) / 32, beat_time: end + 1 / 32 }];
                if (!this.endMarker) node.clip.markers.splice(1, 1);
            }
            return;
        }
        if (node.kind === 'track' && prop === 'name') {
            node.track.name = String(value);
            return;
        }
        if (node.kind === 'chain' && ['in_note', 'name'].includes(prop)) {
            if (prop === 'in_note' && !this.since([12, 3, 0], 'set in_note')) return;
            node.device[prop] = prop === 'name' ? String(value) : Number(value);
            return;
        }
        this.fail(`set: cannot set ${prop} on ${node.path}`);
    }

    call(node, fn, args) {
        if (node.kind === 'app') {
            const parts = { get_major_version: 0, get_minor_version: 1, get_bugfix_version: 2 };
            if (fn in parts) return this.version[parts[fn]];
        } else if (node.kind === 'song' && fn === 'create_scene') {
            this.scenes += 1;
            for (const t of this.tracks) t.slots.push(null);
            return undefined;
        } else if (node.kind === 'song' && fn === 'create_midi_track') {
            const index = args.length && Number(args[0]) >= 0 ? Number(args[0]) : this.tracks.length;
            if (index > this.tracks.length) return this.fail(`create_midi_track: index ${index} out of range`);
            this.tracks.splice(index, 0, this.newTrack({ name: 'MIDI', kind: 'midi' }));
            this.shiftDevice(index, 1);
            return undefined;
        } else if (node.kind === 'song' && fn === 'delete_track') {
            const index = Number(args[0]);
            if (!this.tracks[index]) return this.fail(`delete_track: no track ${index}`);
            this.tracks.splice(index, 1);
            this.shiftDevice(index, -1);
            return undefined;
        } else if ((node.kind === 'track' || node.kind === 'chain') && fn === 'insert_device') {
            if (!this.since([12, 3, 0], 'insert_device')) return undefined;
            const name = String(args[0]);
            const holder = node.kind === 'track' ? node.track : node.device;
            if (this.refuses.includes(name) || !['Drum Rack', 'Simpler'].includes(name)) {
                return this.fail(`insert_device: cannot insert ${name}`);
            }
            const index = args.length > 1 ? Number(args[1]) : holder.devices.length;
            const device = name === 'Drum Rack' ? { name, chains: [] } : { name, sample: null };
            holder.devices.splice(index, 0, device);
            return ['id', 1000 + holder.devices.length];
        } else if (node.kind === 'rack' && fn === 'insert_chain') {
            if (!this.since([12, 3, 0], 'insert_chain')) return undefined;
            // a new Drum Rack chain listens to all notes until in_note is set
            node.device.chains.push({ name: '', in_note: -1, devices: [] });
            return undefined;
        } else if (node.kind === 'device' && node.device.name === 'Simpler' && fn === 'replace_sample') {
            if (!this.since([12, 4, 0], 'replace_sample')) return undefined;
            const filePath = String(args[0]);
            if (args.length !== 1 || !path.isAbsolute(filePath)) return this.fail(`replace_sample: ${args} is not one absolute path`);
            if (this.requireFiles && !fs.existsSync(filePath)) return this.fail(`replace_sample: no file ${filePath}`);
            node.device.sample = filePath;
            return undefined;
        } else if (node.kind === 'clip' && fn === 'add_warp_marker') {
            // a dict {beat_time, sample_time} (seconds); kept in beat order, before the hidden marker
            const marker = args[0] || {};
            const beat = Number(marker.beat_time), seconds = Number(marker.sample_time);
            if (!node.clip.warping || !Number.isFinite(beat) || !Number.isFinite(seconds)) {
                return this.fail(`add_warp_marker: cannot add ${JSON.stringify(marker)}`);
            }
            const markers = node.clip.markers;
            const hidden = markers.pop();
            markers.push({ sample_time: seconds, beat_time: beat });
            markers.push({ sample_time: seconds + (hidden.sample_time - markers[markers.length - 2].sample_time),
                           beat_time: beat + 1 / 32 });
            return undefined;
        } else if (node.kind === 'clip' && fn === 'move_warp_marker') {
            const [beat, distance] = args.map(Number);
            const markers = node.clip.markers || [];
            const at = markers.findIndex((m) => Math.abs(m.beat_time - beat) < 1e-9);
            if (at < 0 || !node.clip.warping) return this.fail(`move_warp_marker: no warp marker at beat ${beat}`);
            // the marker and the ones after it (the hidden one) move together
            for (const m of markers.slice(at)) m.beat_time += distance;
            return undefined;
        } else if (node.kind === 'clip_slot' && fn === 'create_audio_clip') {
            const [major, minor, bugfix] = this.version;
            const old = major < 12 || (major === 12 && (minor === 0 && bugfix < 5));
            if (old) return this.fail(`create_audio_clip: no such function in Live ${this.version.join('.')}`);
            if (args.length !== 1) return this.fail(`create_audio_clip: expected one path, got ${args.length} atoms`);
            const filePath = String(args[0]);
            if (node.track.kind !== 'audio') return this.fail(`create_audio_clip: ${node.path} is not on an audio track`);
            if (node.track.frozen) return this.fail(`create_audio_clip: ${node.path} is frozen`);
            if (node.track.slots[node.slotIndex]) return this.fail(`create_audio_clip: ${node.path} already has a clip`);
            if (!path.isAbsolute(filePath)) return this.fail(`create_audio_clip: ${filePath} is not an absolute path`);
            if (this.requireFiles && !fs.existsSync(filePath)) return this.fail(`create_audio_clip: no file ${filePath}`);
            node.track.slots[node.slotIndex] = LiveSet.newClip(filePath);
            if (this.listsNewClipsLate) this.unlisted.add(`${node.path} clip`);
            return undefined;
        }
        this.fail(`call: no function ${fn} on ${node.path}`);
        return undefined;
    }

    // The NOTONO device's own track moves when a track is inserted or deleted before it.
    shiftDevice(index, by) {
        const m = /^live_set tracks (\d+)(.*)$/.exec(this.device);
        if (m && Number(m[1]) >= index) this.device = `live_set tracks ${Number(m[1]) + by}${m[2]}`;
    }

    getcount(node, child) {
        if (node.kind === 'track' && child === 'clip_slots') return node.track.slots.length;
        if (node.kind === 'track' && child === 'devices') return node.track.devices.length;
        if (node.kind === 'rack' && child === 'chains') return node.device.chains.length;
        if (node.kind === 'song' && child === 'tracks') return this.tracks.length;
        if (node.kind === 'song' && child === 'scenes') return this.scenes;
        this.fail(`getcount: no list ${child} on ${node.path}`);
        return 0;
    }

    clipAt(track, slot) {
        return this.tracks[track].slots[slot];
    }
}

function makeLiveAPI(live) {
    let nextId = 1;
    const ids = new Map();
    function LiveAPI(callback, p) {
        this.callback = callback;
        this.goto(p === undefined ? 'live_set' : p);
    }
    LiveAPI.prototype.goto = function (p) {
        const node = live.resolve(p);
        this._node = node;
        if (!node) {
            this.id = 0;
            this.unquotedpath = '';
            this.path = '""';
            return;
        }
        if (!ids.has(node.path)) ids.set(node.path, nextId++);
        this.id = ids.get(node.path);
        this.unquotedpath = node.path;
        this.path = `"${node.path}"`;
    };
    LiveAPI.prototype._require = function (what) {
        if (!this._node) {
            live.fail(`${what}: invalid LiveAPI object (id 0)`);
            return false;
        }
        return true;
    };
    LiveAPI.prototype.get = function (prop) {
        live.record({ op: 'get', path: this.unquotedpath, name: prop, args: [] });
        return this._require('get') ? live.get(this._node, prop) : [];
    };
    LiveAPI.prototype.set = function (prop, ...args) {
        live.record({ op: 'set', path: this.unquotedpath, name: prop, args });
        if (this._require('set')) live.set(this._node, prop, args[0]);
    };
    LiveAPI.prototype.call = function (fn, ...args) {
        live.record({ op: 'call', path: this.unquotedpath, name: fn, args });
        return this._require('call') ? live.call(this._node, fn, args) : undefined;
    };
    LiveAPI.prototype.getcount = function (child) {
        live.record({ op: 'getcount', path: this.unquotedpath, name: child, args: [] });
        return this._require('getcount') ? live.getcount(this._node, child) : 0;
    };
    return LiveAPI;
}

// --- Max js runtime ------------------------------------------------------------------------

class Scheduler {
    // manual: tests run deferred tasks with flush() and heartbeats with tick(); real: Node timers.
    constructor(mode) {
        this.mode = mode;
        this.deferred = [];
        this.repeating = new Set();
        this.handles = new Set();
    }

    makeTask() {
        const scheduler = this;
        function Task(fn, owner, ...args) {
            this.fn = fn;
            this.owner = owner;
            this.args = args;
            this.interval = 1000;
            this.running = false;
        }
        Task.prototype.execute = function () {
            this.fn.apply(this.owner, this.args);
        };
        Task.prototype.schedule = function (delay) {
            if (scheduler.mode === 'manual') {
                scheduler.deferred.push(this);
            } else {
                const h = setTimeout(() => { scheduler.handles.delete(h); this.execute(); }, delay || 0);
                scheduler.handles.add(h);
            }
        };
        Task.prototype.repeat = function () {
            this.running = true;
            if (scheduler.mode === 'manual') {
                scheduler.repeating.add(this);
            } else {
                this.handle = setInterval(() => this.execute(), this.interval);
                scheduler.handles.add(this.handle);
            }
        };
        Task.prototype.cancel = function () {
            this.running = false;
            scheduler.repeating.delete(this);
            if (this.handle) {
                clearInterval(this.handle);
                scheduler.handles.delete(this.handle);
            }
        };
        return Task;
    }

    flush() {
        while (this.deferred.length) this.deferred.shift().execute();
    }

    tick() {
        for (const task of Array.from(this.repeating)) task.execute();
        this.flush();
    }

    stop() {
        for (const h of this.handles) { clearTimeout(h); clearInterval(h); }
        this.handles.clear();
        this.repeating.clear();
    }
}

function recordingMgraphics(size) {
    const calls = [];
    const target = { size, calls, redraws: 0 };
    return new Proxy(target, {
        get(obj, key) {
            if (key in obj) return obj[key];
            if (key === 'redraw') return () => { obj.redraws += 1; };
            return (...args) => { calls.push([key, ...args]); };
        },
        set(obj, key, value) { obj[key] = value; return true; },
    });
}

// Width and height of a PNG file from its IHDR chunk; [0, 0] for a missing or non-PNG file.
function pngSize(file) {
    try {
        const head = fs.readFileSync(String(file)).subarray(0, 24);
        if (head.length < 24 || head.toString('latin1', 1, 4) !== 'PNG' || head.toString('latin1', 12, 16) !== 'IHDR') {
            return [0, 0];
        }
        return [head.readUInt32BE(16), head.readUInt32BE(20)];
    } catch (error) {
        return [0, 0];
    }
}

// A js or jsui object: the script runs in its own context with Max's globals, and messages
// are dispatched as Max does (a function with the selector's name, else anything()).
class MaxObject {
    constructor(scriptPath, options = {}) {
        // options.source: the script's text when it does not come from scriptPath (a frozen device)
        this.outlets = [];
        this.history = [];      // every message ever sent, kept across clearOutlets()
        this.listeners = [];
        this.posts = [];
        this.scheduler = new Scheduler(options.timers || 'manual');
        this.live = options.live || null;
        const self = this;
        const context = {
            post: (...parts) => { self.posts.push(parts.join(' ')); },
            outlet: (index, ...atoms) => {
                // outlet(n, [a, b]) and outlet(n, a, b) send the same message
                const message = atoms.length === 1 && Array.isArray(atoms[0])
                    ? Array.from(atoms[0]) : atoms;
                self.outlets.push([index, message]);
                self.history.push([index, message]);
                for (const fn of self.listeners) fn(index, message);
            },
            arrayfromargs: (args) => Array.prototype.slice.call(args),
            messagename: '',
            inlet: 0,
            jsarguments: [path.basename(scriptPath)],
            Task: this.scheduler.makeTask(),
        };
        if (this.live) context.LiveAPI = makeLiveAPI(this.live);
        if (options.mgraphicsSize) {
            context.mgraphics = recordingMgraphics(options.mgraphicsSize);
            // Max's Image: the picture's size in pixels, or 0 x 0 when the file cannot be read.
            context.Image = function Image(file) { this.file = file; this.size = pngSize(file); };
        }
        this.context = vm.createContext(context);
        const source = options.source === undefined ? fs.readFileSync(scriptPath, 'utf8') : options.source;
        vm.runInContext(source, this.context, { filename: scriptPath });
    }

    onOutlet(fn) {
        this.listeners.push(fn);
    }

    send(inletIndex, selector, ...args) {
        const c = this.context;
        c.inlet = inletIndex;
        c.messagename = selector;
        const handler = c[selector];
        if (typeof handler === 'function' && !handler.local) return handler.apply(c, args);
        if (typeof c.anything === 'function') return c.anything.apply(c, args);
        throw new Error(`no handler for ${selector}`);
    }

    // Messages sent out of one outlet, oldest first.
    sent(index) {
        return this.outlets.filter(([i]) => i === index).map(([, m]) => m);
    }

    clearOutlets() {
        this.outlets = [];
    }

    stop() {
        this.scheduler.stop();
    }
}

const DEVICE_DIR = path.resolve(__dirname, '..', '..', 'max_for_live');

function loadDevice(options = {}) {
    return new MaxObject(path.join(DEVICE_DIR, 'notono.js'), options);
}

function loadGrid(size = [200, 136]) {
    return new MaxObject(path.join(DEVICE_DIR, 'notono_grid.js'), { mgraphicsSize: size });
}

module.exports = { LiveSet, MaxObject, loadDevice, loadGrid, DEVICE_DIR };
