// Builds the native relay addon (native/relay.c) with node-gyp, which npm ships and puts on the
// PATH of package scripts. pgward runs without it (every session then relays in JavaScript), so a
// machine without a C toolchain still builds and starts: the failure is reported, not fatal,
// unless PGWARD_NATIVE_REQUIRED=1 (CI sets it, so the native relay's tests always run there).
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const output = join(here, 'build', 'Release', 'pgward_relay.node');
const sources = ['relay.c', 'tls.c', 'tls-context.c', 'tls-endpoint.c', 'tls-binding.c', 'tls.h', 'tls-internal.h', 'tls-endpoint.h', 'binding.gyp'].map((f) => join(here, f));
const required = process.env.PGWARD_NATIVE_REQUIRED === '1';

const newest = Math.max(...sources.map((f) => statSync(f).mtimeMs));
if (existsSync(output) && statSync(output).mtimeMs >= newest) process.exit(0);

// Outside npm (`node native/build.mjs`): npm's own node-gyp, and the headers installed with Node
// (node-gyp would otherwise try to download them).
const prefix = join(dirname(process.execPath), '..');
const bundled = join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
const gyp = process.env.npm_config_node_gyp ?? (existsSync(bundled) ? bundled : undefined);
const [command, args] = gyp ? [process.execPath, [gyp]] : ['node-gyp', []];
if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
const result = spawnSync(command, [...args, 'rebuild', '--loglevel=warn'], { cwd: here, stdio: ['ignore', 'inherit', 'inherit'] });
if (result.status === 0) process.exit(0);

const why = result.error ? String(result.error) : `node-gyp exited with ${result.status}`;
console.error(`pgward: the native relay was not built (${why}); sessions will relay in JavaScript.`);
process.exit(required ? 1 : 0);
