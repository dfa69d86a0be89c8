// A device as Live loads it, for the tests that need more than the script: the built `.amxd` read
// as Max reads it (a frozen device's scripts come from inside it), its Live parameters with the
// value rules Live applies to their types, and the script's view outlet routed as the patch routes
// it. Part of the one stand-in (Live cannot run here); it models only what the device's file
// declares and Live does with it.
'use strict';

const fs = require('fs');
const path = require('path');
const { MaxObject, DEVICE_DIR } = require('./max_stand_in');
const { fits } = require('./view_font');

const DEVICE_FILE = path.join(DEVICE_DIR, 'NOTONO Live.amxd');
const HIDDEN = 2;   // parameter_invisible: neither automated nor stored, so no undo step
const BLOB = 3;     // parameter_type of a pattr in parameter mode: any list, stored with the set

// The chunks of an .amxd and, for a frozen one, the files of its mx@c container.
function readAmxd(file) {
    const data = fs.readFileSync(file);
    const chunks = {};
    for (let at = 0; at + 8 <= data.length;) {
        const tag = data.toString('latin1', at, at + 4);
        const size = data.readUInt32LE(at + 4);
        chunks[tag] = data.subarray(at + 8, at + 8 + size);
        at += 8 + size;
    }
    const body = chunks.ptch;
    if (!body) throw new Error(`${file}: no ptch chunk`);
    const files = {};
    let patch = body;
    if (body.toString('latin1', 0, 4) === 'mx@c') {
        const directoryAt = Number(body.readBigUInt64BE(8));
        const directory = body.subarray(directoryAt);
        if (directory.toString('latin1', 0, 4) !== 'dlst') throw new Error(`${file}: no dlst directory`);
        const entries = [];
        for (let at = 8; at < directory.length;) {
            const size = directory.readUInt32BE(at + 4);
            const fields = {};
            for (let f = at + 8; f + 8 <= at + size;) {
                const fieldSize = directory.readUInt32BE(f + 4);
                fields[directory.toString('latin1', f, f + 4)] = directory.subarray(f + 8, f + fieldSize);
                f += fieldSize;
            }
            const name = fields.fnam.toString('utf8').replace(/\0+$/, '');
            const offset = fields.of32.readUInt32BE(0);
            entries.push([name, body.subarray(offset, offset + fields.sz32.readUInt32BE(0))]);
            at += size;
        }
        patch = entries[0][1];
        for (const [name, bytes] of entries.slice(1)) files[name] = bytes;
    }
    const text = patch.toString('utf8').replace(/\0+$/, '');
    return { deviceType: chunks.ampf.toString('latin1'), patcher: JSON.parse(text).patcher, files,
             frozen: patch !== body };
}

// The value Live holds after a parameter is set to `value`: Int holds 0-255 whatever the range says,
// Float holds its range, Enum an index into its entries.
function liveValue(valueof, value) {
    const type = valueof.parameter_type;
    const low = valueof.parameter_mmin === undefined ? 0 : valueof.parameter_mmin;
    if (type === 2) {
        const entries = valueof.parameter_enum || [];
        return Math.max(0, Math.min(entries.length - 1, Math.round(value)));
    }
    if (type === 1) {
        const high = valueof.parameter_mmax === undefined ? 255 : valueof.parameter_mmax;
        return Math.max(Math.max(0, low), Math.min(Math.min(255, high), Math.round(value)));
    }
    const high = valueof.parameter_mmax === undefined ? 1 : valueof.parameter_mmax;
    return Math.max(low, Math.min(high, Number(value)));
}

class LiveDevice {
    constructor({ live, file = DEVICE_FILE }) {
        const amxd = readAmxd(file);
        this.amxd = amxd;
        const boxes = {};
        for (const { box } of amxd.patcher.boxes) boxes[box.id] = box;
        const lines = amxd.patcher.lines.map(({ patchline }) => [patchline.source, patchline.destination]);
        const from = (id, outlet) => lines.filter(([s]) => s[0] === id && s[1] === outlet).map(([, d]) => boxes[d[0]]);
        const withText = (prefix) => Object.values(boxes).filter((b) => (b.text || '').startsWith(prefix));

        const script = amxd.frozen ? amxd.files['notono.js'] : fs.readFileSync(path.join(path.dirname(file), 'notono.js'));
        if (!script) throw new Error('the frozen device does not embed notono.js');
        this.d = new MaxObject(path.join(DEVICE_DIR, 'notono.js'), { live, source: script.toString('utf8') });

        const router = withText('route ')[0];
        this.routes = {};
        router.text.split(' ').slice(1).forEach((key, i) => { this.routes[key] = from(router.id, i); });
        this.parameters = {};
        for (const box of Object.values(boxes)) {
            const enabled = box.parameter_enable === 1 ||
                (box.saved_object_attributes && box.saved_object_attributes.parameter_enable === 1);
            if (!enabled || !box.saved_attribute_attributes) continue;
            const valueof = box.saved_attribute_attributes.valueof;
            const prepend = from(box.id, 0).find((b) => (b.text || '').startsWith('prepend '));
            this.parameters[valueof.parameter_longname] = {
                box, valueof, selector: prepend ? prepend.text.split(' ')[1] : null,
                hidden: valueof.parameter_invisible === HIDDEN,
            };
        }
        this.sendPort = Number(withText('udpsend ')[0].text.split(' ')[2]);
        this.receivePort = Number(withText('udpreceive ')[0].text.split(' ')[1]);
        this.values = {};
        this.parameterWrites = [];   // messages the script sent into a stored or automated parameter
        this.unrouted = [];
        this.lines = { status: [], file: [], region: [] };
        this.d.onOutlet((index, message) => this.fromScript(index, message));
    }

    fromScript(index, message) {
        if (index === 0 && message[0] === 'port') this.sendPort = Number(message[1]);
        if (index === 1 && message[0] === 'port') this.receivePort = Number(message[1]);
        if (index !== 2) return;
        const targets = this.routes[message[0]];
        if (!targets || !targets.length) {
            this.unrouted.push(message);
            return;
        }
        for (const box of targets) {
            const parameter = Object.values(this.parameters).find((p) => p.box === box);
            if (parameter && !parameter.hidden) {
                const name = parameter.valueof.parameter_longname;
                this.parameterWrites.push([name, ...message.slice(1)]);
                // "set" stores a pattr's value without sending it out again
                if (parameter.valueof.parameter_type === BLOB && message[1] === 'set') this.values[name] = message.slice(2);
            } else if (box.maxclass === 'comment' && message[1] === 'set') {
                (this.lines[box.varname] = this.lines[box.varname] || []).push(message.slice(2).join(' '));
            }
        }
    }

    // Live gives every stored parameter its saved value (else its initial one) before
    // live.thisdevice bangs; each reaches the script through its prepend.
    // A blob (pattr) with nothing saved sends nothing. `saved` is what a closed set kept: another
    // device's `stored()`.
    load(saved = {}) {
        for (const [name, p] of Object.entries(this.parameters)) {
            const v = p.valueof;
            if (p.hidden || !p.selector || v.parameter_type === 4) continue;
            if (v.parameter_type === BLOB) {
                if (name in saved) {
                    this.values[name] = saved[name];
                    this.d.send(0, p.selector, ...saved[name]);
                }
                continue;
            }
            const initial = name in saved ? saved[name] : (v.parameter_initial || [0])[0];
            this.values[name] = liveValue(v, initial);
            this.d.send(0, p.selector, this.values[name]);
        }
        this.d.send(0, 'live_ready');
        return this;
    }

    // What Live saves with the set: every stored parameter's value (Hidden ones are not saved).
    stored() {
        const out = {};
        for (const [name, p] of Object.entries(this.parameters)) {
            if (!p.hidden && name in this.values) out[name] = this.values[name];
        }
        return out;
    }

    // Live's Undo (or a preset) steps a blob back: the pattr sends the older value.
    recall(name, value) {
        const p = this.parameters[name];
        this.values[name] = value;
        this.d.send(0, p.selector, ...value);
    }

    // The user, automation or a MIDI mapping moves a parameter.
    turn(name, value) {
        const p = this.parameters[name];
        this.values[name] = liveValue(p.valueof, value);
        this.d.send(0, p.selector, this.values[name]);
    }

    overflowing() {
        return this.lines.status.concat(this.lines.file).filter((text) => !fits(text));
    }
}

module.exports = { LiveDevice, readAmxd, liveValue, DEVICE_FILE };
