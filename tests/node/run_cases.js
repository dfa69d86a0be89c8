// Runs a table of test cases and says, for each, whether it passed and why not.
'use strict';

function runCases(cases) {
    const results = {};
    for (const [name, fn] of Object.entries(cases)) {
        try {
            fn();
            results[name] = { ok: true };
        } catch (error) {
            results[name] = { ok: false, error: String((error && error.stack) || error) };
        }
    }
    return results;
}

module.exports = { runCases };
