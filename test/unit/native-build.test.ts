/**
 * native/build.mjs decides whether the addon must be built again. It runs here on a copy of
 * native/ with a stand-in for node-gyp (npm_config_node_gyp) that only counts its calls and
 * writes an addon file, so the decision is tested without compiling anything.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';

const NATIVE = fileURLToPath(new URL('../../../native/', import.meta.url));

// Exits with FAKE_GYP_STATUS (0 unless set); on success leaves build/Release/pgward_relay.node.
const FAKE_GYP = `
const { appendFileSync, mkdirSync, writeFileSync } = require('node:fs');
appendFileSync(process.env.FAKE_GYP_CALLS, 'rebuild\\n');
const status = Number(process.env.FAKE_GYP_STATUS ?? 0);
if (status === 0) {
  mkdirSync('build/Release', { recursive: true });
  writeFileSync('build/Release/pgward_relay.node', 'not an addon');
}
process.exit(status);
`;

describe('native/build.mjs: when the addon is built again', () => {
  let dir: string;
  let native: string;
  let calls: string;
  let gyp: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'pgward-native-build-'));
    native = join(dir, 'native');
    for (const f of readdirSync(NATIVE).filter((f) => /\.(c|h|gyp)$/.test(f) || f === 'build.mjs')) {
      cpSync(join(NATIVE, f), join(native, f));
    }
    calls = join(dir, 'calls');
    gyp = join(dir, 'fake-gyp.cjs');
    writeFileSync(gyp, FAKE_GYP);
    writeFileSync(calls, '');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function build(env: Record<string, string> = {}): { status: number | null; stderr: string; builds: number } {
    const r = spawnSync(process.execPath, [join(native, 'build.mjs')], {
      env: { ...process.env, npm_config_node_gyp: gyp, FAKE_GYP_CALLS: calls, PGWARD_NATIVE_REQUIRED: '0', ...env },
      encoding: 'utf8',
    });
    return { status: r.status, stderr: r.stderr, builds: readFileSync(calls, 'utf8').split('\n').filter(Boolean).length };
  }
  const addon = () => join(native, 'build', 'Release', 'pgward_relay.node');

  it('builds when there is no addon, and not again while the sources are the same', () => {
    assert.deepEqual([build().status, build().builds], [0, 1]);
    assert.equal(build().builds, 1, 'unchanged sources are not built again');
    assert.ok(existsSync(join(native, 'build', 'sources.sha256')));
  });

  it('builds again when a source changed, even one dated before the addon', () => {
    const before = build().builds;
    const source = join(native, 'carrier.c');
    writeFileSync(source, readFileSync(source, 'utf8') + '\n/* changed */\n');
    const hourAgo = new Date(Date.now() - 3_600_000);
    utimesSync(source, hourAgo, hourAgo);
    assert.equal(build().builds, before + 1);
    assert.equal(build().builds, before + 1, 'and then not again');
  });

  it('builds again an addon that has no record of its sources (built by an older build.mjs)', () => {
    const before = build().builds;
    rmSync(join(native, 'build', 'sources.sha256'));
    assert.ok(existsSync(addon()));
    assert.equal(build().builds, before + 1);
  });

  it('a failed build is reported, records nothing, and fails only when the addon is required', () => {
    rmSync(join(native, 'build'), { recursive: true, force: true });
    const optional = build({ FAKE_GYP_STATUS: '1' });
    assert.equal(optional.status, 0);
    assert.match(optional.stderr, /the native carrier was not built \(node-gyp exited with 1\)/);
    assert.equal(existsSync(join(native, 'build', 'sources.sha256')), false);
    const required = build({ FAKE_GYP_STATUS: '1', PGWARD_NATIVE_REQUIRED: '1' });
    assert.equal(required.status, 1);
    const again = build();
    assert.equal(again.builds, required.builds + 1, 'the next build tries again');
  });
});
