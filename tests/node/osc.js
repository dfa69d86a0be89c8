// A small OSC 1.0 codec and the two Max objects built on it, [udpsend] and [udpreceive], for
// running the device's JavaScript against the real daemon over real UDP.
//
// Max converts atoms the way this codec does: an integral number goes out as int32 ('i'), any
// other number as float32 ('f'), a symbol as a string ('s'); incoming 'i'/'f'/'s' (and 'h'/'d',
// 'T'/'F') come back as numbers and strings, and a bundle is unpacked into its messages.
'use strict';

const dgram = require('dgram');

function pad4(n) {
    return (n + 3) & ~3;
}

function encodeString(text) {
    const raw = Buffer.from(String(text), 'utf8');
    const out = Buffer.alloc(pad4(raw.length + 1));
    raw.copy(out);
    return out;
}

function encodeMessage(address, args) {
    let tags = ',';
    const parts = [];
    for (const arg of args) {
        if (typeof arg === 'number' && Number.isInteger(arg) && arg >= -2147483648 && arg <= 2147483647) {
            tags += 'i';
            const b = Buffer.alloc(4);
            b.writeInt32BE(arg);
            parts.push(b);
        } else if (typeof arg === 'number') {
            tags += 'f';
            const b = Buffer.alloc(4);
            b.writeFloatBE(arg);
            parts.push(b);
        } else {
            tags += 's';
            parts.push(encodeString(arg));
        }
    }
    return Buffer.concat([encodeString(address), encodeString(tags), ...parts]);
}

function readString(buf, offset) {
    const end = buf.indexOf(0, offset);
    if (end < 0) throw new Error(`OSC string at byte ${offset} has no terminating NUL`);
    return [buf.toString('utf8', offset, end), pad4(end + 1)];
}

// Decode a datagram into a list of {address, args}.
function decode(buf) {
    if (buf.length >= 8 && buf.toString('ascii', 0, 8) === '#bundle\0') {
        const messages = [];
        let offset = 16;  // "#bundle\0" + 8-byte timetag, ignored as Max's udpreceive does
        while (offset < buf.length) {
            const size = buf.readInt32BE(offset);
            messages.push(...decode(buf.subarray(offset + 4, offset + 4 + size)));
            offset += 4 + size;
        }
        return messages;
    }
    let [address, offset] = readString(buf, 0);
    let tags = ',';
    if (offset < buf.length) [tags, offset] = readString(buf, offset);
    const args = [];
    for (const tag of tags.slice(1)) {
        if (tag === 'i') { args.push(buf.readInt32BE(offset)); offset += 4; }
        else if (tag === 'f') { args.push(buf.readFloatBE(offset)); offset += 4; }
        else if (tag === 'h') { args.push(Number(buf.readBigInt64BE(offset))); offset += 8; }
        else if (tag === 'd') { args.push(buf.readDoubleBE(offset)); offset += 8; }
        else if (tag === 's' || tag === 'S') { let s; [s, offset] = readString(buf, offset); args.push(s); }
        else if (tag === 'T') args.push(1);
        else if (tag === 'F') args.push(0);
        else throw new Error(`OSC type tag ${tag} is not supported`);
    }
    return [{ address, args }];
}

// [udpsend host port]: OSC messages out of one socket (so the daemon sees one source port);
// "host H" and "port N" re-aim it, as in Max.
class UdpSend {
    constructor(host, port) {
        this.host = host;
        this.port = port;
        this.socket = dgram.createSocket('udp4');
        this.sent = [];
    }

    message(atoms) {
        const [selector, ...args] = atoms;
        if (selector === 'host') { this.host = String(args[0]); return; }
        if (selector === 'port') { this.port = Number(args[0]); return; }
        this.sent.push(atoms);
        this.socket.send(encodeMessage(selector, args), this.port, this.host);
    }

    close() {
        this.socket.close();
    }
}

// [udpreceive port]: each OSC message becomes a Max message whose selector is the address.
class UdpReceive {
    constructor(port, onMessage) {
        this.onMessage = onMessage;
        this.received = [];
        this.socket = dgram.createSocket('udp4');
        this.socket.on('message', (buf) => {
            for (const m of decode(buf)) {
                this.received.push(m);
                this.onMessage(m.address, m.args);
            }
        });
        this.ready = new Promise((resolve) => this.socket.bind(port, '127.0.0.1', resolve));
    }

    get port() {
        return this.socket.address().port;
    }

    close() {
        this.socket.close();
    }
}

module.exports = { encodeMessage, decode, UdpSend, UdpReceive };
