// Builds the native carrier addon (native/*.c) with node-gyp, which npm ships and puts on the
// PATH of package scripts. pgward runs without it (every session then relays in JavaScript), so a
// machine without a C toolchain still builds and starts: the failure is reported, not fatal,
// unless PGWARD_NATIVE_REQUIRED=1 (CI sets it, so the native carrier's tests always run there).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const output = join(here, 'build', 'Release', 'pgward_relay.node');
// The addon is rebuilt when its sources' content differs from what it was built from, not when
// a file is newer: a checkout or a copy can leave an old addon dated after changed sources, and an
// addon older than the TypeScript that calls it fails at run time.
const stamp = join(here, 'build', 'sources.sha256');
const required = process.env.PGWARD_NATIVE_REQUIRED === '1';

const digest = createHash('sha256');
for (const f of readdirSync(here).filter((f) => /\.(c|h|gyp)$/.test(f)).sort()) {
  digest.update(`${f}\0`).update(readFileSync(join(here, f))).update('\0');
}
const sourcesDigest = digest.digest('hex');
const builtFrom = existsSync(stamp) ? readFileSync(stamp, 'utf8').trim() : undefined;
if (existsSync(output) && builtFrom === sourcesDigest) process.exit(0);

// Outside npm (`node native/build.mjs`): npm's own node-gyp, and the headers installed with Node
// (node-gyp would otherwise try to download them).
const prefix = join(dirname(process.execPath), '..');
const bundled = join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
const gyp = process.env.npm_config_node_gyp ?? (existsSync(bundled) ? bundled : undefined);
const [command, args] = gyp ? [process.execPath, [gyp]] : ['node-gyp', []];
if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
const result = spawnSync(command, [...args, 'rebuild', '--loglevel=warn'], { cwd: here, stdio: ['ignore', 'inherit', 'inherit'] });
if (result.status === 0 && existsSync(output)) {
  writeFileSync(stamp, `${sourcesDigest}\n`);
  process.exit(0);
}

const why = result.error
  ? String(result.error)
  : result.status === 0
    ? `node-gyp left no ${output}`
    : `node-gyp exited with ${result.status}`;
console.error(`pgward: the native carrier was not built (${why}); sessions will relay in JavaScript.`);
process.exit(required ? 1 : 0);
