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

/** What a `pgward --help` run with these Node options printed, the probe's burst at its exit. */
function burstRun(nodeArgs: string[], env: NodeJS.ProcessEnv = {}): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [...nodeArgs, '--import', PROBE, BIN, '--help'], { env: { ...process.env, NODE_OPTIONS: '', ...env }, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) return reject(err);
      resolve({ stdout, stderr });
    });
  });
}

/** The new space's size after an allocation burst in a `pgward --help` run with these Node options. */
async function newSpaceAfterBurst(nodeArgs: string[], env: NodeJS.ProcessEnv = {}): Promise<number> {
  const { stderr } = await burstRun(nodeArgs, env);
  const m = /new_space=(\d+)/.exec(stderr);
  if (!m) throw new Error(`no new_space line in: ${stderr}`);
  return Number(m[1]);
}

/**
 * How many of the burst's scavenges had help from V8's background threads, and how many there
 * were: `--trace-gc-nvp` prints (to stdout) each scavenge's `background.scavenge.parallel` time.
 */
async function scavengesHelped(nodeArgs: string[]): Promise<{ helped: number; all: number }> {
  const { stdout } = await burstRun(['--trace-gc-nvp', ...nodeArgs]);
  const times = [...stdout.matchAll(/ gc=s .*?background\.scavenge\.parallel=([\d.]+)/g)].map((m) => Number(m[1]));
  return { helped: times.filter((t) => t > 0).length, all: times.length };
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

  it('scavenges on the main thread alone, without V8’s parallel helper threads', { timeout: 60_000 }, async () => {
    const { helped, all } = await scavengesHelped([]);
    assert.ok(all > 50, `the burst ran ${all} scavenges`);
    assert.equal(helped, 0);
  });

  it('leaves a parallel-scavenge flag on Node’s command line alone (NODE_OPTIONS does not take one)', { timeout: 60_000 }, async () => {
    // Each of the burst's hundreds of scavenges offers work to a helper thread (on an idle machine
    // nearly all take some); a loaded machine may start the helpers late, so only "some" is asserted.
    const { helped, all } = await scavengesHelped(['--parallel-scavenge']);
    assert.ok(helped > 0, `${helped} of ${all} scavenges helped`);
  });
});
