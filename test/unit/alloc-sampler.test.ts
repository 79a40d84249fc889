import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { summarizeHeapProfile, type HeapProfile } from '../../bench/heapprofile-summary.js';

const PRELOAD = fileURLToPath(new URL('../../bench/alloc-sampler.js', import.meta.url));

const frame = (functionName: string, url = 'file:///x/dist/src/a.js', lineNumber = 9) => ({ functionName, url, lineNumber });

describe('login-profile allocation sampling (LOGIN_ALLOC)', () => {
  it('sums self bytes per function across the call tree and divides by the count given', () => {
    const profile: HeapProfile = {
      head: {
        callFrame: frame('(root)', ''),
        selfSize: 0,
        children: [
          { callFrame: frame('login'), selfSize: 3000, children: [{ callFrame: frame('helper', 'file:///x/dist/src/b.js', 1), selfSize: 1000 }] },
          { callFrame: frame('other'), selfSize: 500, children: [{ callFrame: frame('login'), selfSize: 1500 }] },
        ],
      },
    };
    const { bytes, text } = summarizeHeapProfile(profile, 10);
    assert.equal(bytes, 600);
    assert.match(text, /^600 bytes allocated per connection/);
    // login's two nodes are one row (4500 / 10), first; helper's 1000 / 10 is its own.
    const rows = text.split('self bytes by function:')[1]!.trim().split('\n');
    assert.match(rows[0]!, /^\s*450 B\s+75\.0 %\s+login dist\/src\/a\.js:10$/);
    assert.ok(rows.some((r) => /^\s*100 B .* helper dist\/src\/b\.js:2$/.test(r)), rows.join('\n'));
  });

  it('samples only between two SIGUSR2, garbage already collected included', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'alloc-sampler-'));
    // Short-lived garbage, about 1 MB every 5 ms: young-generation GCs collect it long before the profile is taken.
    const script = `function churn() { let keep = 0; for (let i = 0; i < 8000; i++) keep += new Array(16).fill(i).length; return keep; }
      setInterval(churn, 5); process.stdout.write('ready\\n');`;
    const child = spawn(process.execPath, ['--import', PRELOAD, '-e', script], { env: { ...process.env, PGWARD_ALLOC_DIR: dir }, stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
      child.kill('SIGUSR2');
      await appears(join(dir, `alloc-${child.pid}.started`));
      await new Promise((r) => setTimeout(r, 300));
      child.kill('SIGUSR2');
      const file = join(dir, `alloc-${child.pid}-1.heapprofile`);
      await appears(file);
      const { bytes, text } = summarizeHeapProfile(JSON.parse(await readFile(file, 'utf8')) as HeapProfile);
      // 300 ms of ~200 MB/s: far more than the 1 MiB semi-space could hold alive at once.
      assert.ok(bytes > 8 * 1024 * 1024, `only ${bytes} bytes sampled`);
      const top = text.split('self bytes by function:')[1]!.trim().split('\n')[0]!;
      assert.match(top, /churn/);
      assert.deepEqual((await readdir(dir)).filter((f) => f.endsWith('.part')), []);
    } finally {
      child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });
});

async function appears(file: string): Promise<void> {
  for (let waited = 0; waited < 20_000; waited += 20) {
    if (await stat(file).then(() => true, () => false)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${file} did not appear`);
}
