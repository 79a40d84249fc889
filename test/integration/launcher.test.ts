import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

const BIN = fileURLToPath(new URL('../../../bin/pgward.js', import.meta.url));

// Loaded before bin/pgward.js: at exit, after pgward has run, it allocates ~200 MB of short-lived
// objects (which grow the young generation as far as V8 lets it) and prints the new space's size.
const PROBE = `data:text/javascript,${encodeURIComponent(`
  import v8 from 'node:v8';
  process.on('exit', () => {
    let keep = [];
    for (let r = 0; r < 200; r++) {
      const a = [];
      for (let i = 0; i < 20000; i++) a.push({ i, s: 'x' + i });
      keep.push(a.slice(0, 50));
    }
    const space = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
    process.stderr.write('new_space=' + space.space_size + '\\n');
  });
`)}`;

/** The new space's size after an allocation burst in a `pgward --help` run with these Node options. */
function newSpaceAfterBurst(nodeArgs: string[], env: NodeJS.ProcessEnv = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [...nodeArgs, '--import', PROBE, BIN, '--help'], { env: { ...process.env, NODE_OPTIONS: '', ...env } }, (err, _stdout, stderr) => {
      if (err) return reject(err);
      const m = /new_space=(\d+)/.exec(stderr);
      if (!m) return reject(new Error(`no new_space line in: ${stderr}`));
      resolve(Number(m[1]));
    });
  });
}

const MiB = 1024 * 1024;

describe('the launcher (bin/pgward.js)', () => {
  it('keeps V8’s young generation at its first size (1 MiB semi-spaces) during an allocation burst', { timeout: 60_000 }, async () => {
    assert.ok((await newSpaceAfterBurst([])) <= 2 * MiB);
  });

  it('leaves a semi-space flag given to Node alone, on its command line or in NODE_OPTIONS', { timeout: 60_000 }, async () => {
    // Without the launcher's default the burst grows the new space to Node's maximum (2 × 16 MiB on 64-bit).
    assert.ok((await newSpaceAfterBurst(['--semi-space-growth-factor=2'])) > 8 * MiB, 'on the command line');
    assert.ok((await newSpaceAfterBurst([], { NODE_OPTIONS: '--max-semi-space-size=16' })) > 8 * MiB, 'in NODE_OPTIONS');
  });
});
