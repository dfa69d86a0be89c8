// Real PNG files for the grid's tests, written with Node's zlib.
'use strict';

const fs = require('fs');
const zlib = require('zlib');

// A real PNG file of width x height (grey), written with Node's zlib and a CRC-32 of its own.
function writePng(file, width, height) {
    const table = Array.from({ length: 256 }, (_, n) => {
        let c = n;
        for (let k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320 ^ (c >>> 1) : c >>> 1;
        return c >>> 0;
    });
    const crc = (buf) => {
        let c = 0xFFFFFFFF;
        for (const byte of buf) c = table[(c ^ byte) & 0xFF] ^ (c >>> 8);
        return (c ^ 0xFFFFFFFF) >>> 0;
    };
    const chunk = (tag, data) => {
        const head = Buffer.alloc(4);
        head.writeUInt32BE(data.length);
        const body = Buffer.concat([Buffer.from(tag, 'latin1'), data]);
        const tail = Buffer.alloc(4);
        tail.writeUInt32BE(crc(body));
        return Buffer.concat([head, body, tail]);
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(width, 0);
    ihdr.writeUInt32BE(height, 4);
    ihdr[8] = 8;   // 8-bit greyscale
    const rows = Buffer.alloc((width + 1) * height, 0x80);
    for (let r = 0; r < height; r++) rows[r * (width + 1)] = 0;   // filter byte: none
    fs.writeFileSync(file, Buffer.concat([Buffer.from([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]),
        chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(rows)), chunk('IEND', Buffer.alloc(0))]));
}

module.exports = { writePng };
