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
const commandLine = process.execArgv.join(' ');
const nodeOptions = `${commandLine} ${process.env.NODE_OPTIONS ?? ''}`;
const SEMI_SPACE_FLAG = /(^|\s)--(max|min)[-_]semi[-_]space[-_]size|(^|\s)--semi[-_]space[-_]growth[-_]factor/;
if (!SEMI_SPACE_FLAG.test(nodeOptions)) {
  setFlagsFromString('--semi-space-growth-factor=1');
}

// V8 scavenges in parallel on helper threads by default. With semi-spaces this small a scavenge
// takes well under a millisecond, and waking helper threads for it costs more CPU than it saves:
// under connection churn the median CPU per plain login fell 4-11 % without it (five runs of
// builds in turn; TLS logins moved within the noise; docs/benchmarks.md, stop 33). A proxy shares
// its cores with the clients and the database, so it is CPU, not pause time, that counts. A
// parallel-scavenge flag on Node's command line is left alone (NODE_OPTIONS does not take one).
const PARALLEL_SCAVENGE_FLAG = /(^|\s)--(no[-_])?parallel[-_]scavenge/;
if (!PARALLEL_SCAVENGE_FLAG.test(commandLine)) {
  setFlagsFromString('--no-parallel-scavenge');
}

import('../dist/src/cli/main.js').then((m) => m.main(process.argv.slice(2))).then(
  (code) => { if (typeof code === 'number') process.exitCode = code; },
  (err) => { console.error(err?.stack ?? String(err)); process.exitCode = 1; },
);
