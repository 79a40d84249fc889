#!/usr/bin/env node
// The published entry point: the compiled CLI lives in dist/ (run `npm run build` first).
import { setFlagsFromString } from 'node:v8';

// V8's young generation (two semi-spaces) grows from 1 MiB to 16 MiB a semi-space during a burst
// of logins and is not given back when the proxy goes idle: some 28 MiB of RSS held for good,
// which is most of what 1 000 idle sessions seem to cost (docs/benchmarks.md, "The young
// generation"). pgward keeps it at its first size, as `--max-semi-space-size=1` would; that flag
// only works on Node's command line, which this file does not control, but the growth factor can
// still be set here, before anything runs. A semi-space flag given to Node (on its command line
// or in NODE_OPTIONS) is the operator's choice and is left alone: `NODE_OPTIONS=
// --max-semi-space-size=16` gives Node's default back.
const SEMI_SPACE_FLAG = /(^|\s)--(max|min)[-_]semi[-_]space[-_]size|(^|\s)--semi[-_]space[-_]growth[-_]factor/;
if (!SEMI_SPACE_FLAG.test(`${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`)) {
  setFlagsFromString('--semi-space-growth-factor=1');
}

import('../dist/src/cli/main.js').then((m) => m.main(process.argv.slice(2))).then(
  (code) => { if (typeof code === 'number') process.exitCode = code; },
  (err) => { console.error(err?.stack ?? String(err)); process.exitCode = 1; },
);
