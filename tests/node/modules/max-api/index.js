// Stand-in for Node for Max's `max-api` module (available to [node.script] inside Max only): the
// calls notono_daemon.js makes (addHandler, outlet, post), plus the two hooks a test harness uses
// to play the patch's cords: _deliver (a message into the node.script inlet) and _onOutlet.
'use strict';

const handlers = {};
const listeners = [];

module.exports = {
    addHandler(selector, fn) { handlers[selector] = fn; },
    outlet(...atoms) { for (const fn of listeners) fn(atoms); return Promise.resolve(); },
    post(...parts) { process.stderr.write(`${parts.join(' ')}\n`); return Promise.resolve(); },
    _deliver(selector, ...args) {
        if (!handlers[selector]) throw new Error(`node.script: no handler for ${selector}`);
        return handlers[selector](...args);
    },
    _onOutlet(fn) { listeners.push(fn); },
};
