// How wide a text is on the device's status and file lines: Arial Bold at 9.5 pt in a 444 px
// comment (build.py STATUS_RECT, FILE_RECT) with 4 px of inset on each side. Advance widths in
// 1/1000 em, grouped by width (Arial Bold shares Helvetica-Bold's metrics); any character not
// listed counts as a full em. Kept apart from notono.js on purpose: the test measures what the
// device shows with its own table.
'use strict';

const GROUPS = {
    238: "'", 278: ' ,./I\\ijl', 280: '|', 333: '!():;-[]`ft', 389: '*{}r', 474: '"', 500: 'z',
    556: '0123456789#$_aceksvxyJ', 584: '+<=>^~', 611: 'bdghnopqu?FLTZ', 667: 'EPSVXY',
    722: 'ABCDHKNRU&', 778: 'GOQw', 833: 'M', 889: '%m', 944: 'W', 975: '@',
};

const WIDTH = {};
for (const [units, chars] of Object.entries(GROUPS)) {
    for (const ch of chars) WIDTH[ch] = Number(units);
}

const FONT_SIZE = 9.5;
const BOX_WIDTH = 444;
const INSET = 4;

function widthPx(text) {
    let units = 0;
    for (const ch of String(text)) units += WIDTH[ch] === undefined ? 1000 : WIDTH[ch];
    return units * FONT_SIZE / 1000;
}

function fits(text) {
    return widthPx(text) <= BOX_WIDTH - 2 * INSET;
}

module.exports = { widthPx, fits, BOX_WIDTH };
