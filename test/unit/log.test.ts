import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../../src/telemetry/log.js';

const LOG_MODULE = fileURLToPath(new URL('../../src/telemetry/log.js', import.meta.url));

/** Runs a Node process that logs with pgward's logger (`body` uses `log`), with its stdout piped here. */
function run(body: string, destination?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const script = `
    const { createLogger } = await import(${JSON.stringify(LOG_MODULE)});
    const log = createLogger({ format: 'json', level: 'debug', destination: ${JSON.stringify(destination)} });
    ${body}`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

/** The `n` field of every JSON line, in the order written. */
function numbers(text: string): number[] {
  return text.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { n: number }).n);
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

// Lines logged in one turn, over several turns (awaits), and more than one batch (64 KiB) in one go.
const LOG_20000 = `
  for (let i = 0; i < 5000; i++) log.info('line', { n: i });
  await new Promise((r) => setImmediate(r));
  for (let i = 5000; i < 10000; i++) { log.info('line', { n: i }); if (i % 1000 === 0) await Promise.resolve(); }
  await new Promise((r) => setTimeout(r, 5));
  for (let i = 10000; i < 20000; i++) log.info('line', { n: i });`;

describe('log lines are batched per event-loop turn and never lost on exit', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pgward-log-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('a process that calls process.exit right after logging has written every line, in order', async () => {
    const r = await run(`${LOG_20000}\nprocess.exit(3);`);
    assert.equal(r.code, 3, r.stderr);
    assert.deepEqual(numbers(r.stdout), range(20000));
  });

  it('…and one that ends by itself, or by an uncaught exception', async () => {
    const natural = await run(LOG_20000);
    assert.equal(natural.code, 0, natural.stderr);
    assert.deepEqual(numbers(natural.stdout), range(20000));
    const crash = await run(`${LOG_20000}\nsetTimeout(() => { log.error('last words', { n: 20000 }); throw new Error('boom'); }, 1);`);
    assert.equal(crash.code, 1);
    assert.match(crash.stderr, /boom/);
    assert.deepEqual(numbers(crash.stdout), range(20001));
  });

  it('the same for --logDestination, and a reopen sends later lines to a new file', async () => {
    const file = join(dir, 'pgward.log');
    const r = await run(
      `for (let i = 0; i < 3000; i++) log.info('line', { n: i });
       const { renameSync } = await import('node:fs');
       renameSync(${JSON.stringify(file)}, ${JSON.stringify(`${file}.1`)});
       log.reopen();
       for (let i = 3000; i < 6000; i++) log.info('line', { n: i });
       process.exit(0);`,
      file,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
    assert.deepEqual(numbers(await readFile(`${file}.1`, 'utf8')), range(3000));
    assert.deepEqual(numbers(await readFile(file, 'utf8')), range(3000).map((i) => i + 3000));
    await rename(file, join(dir, 'done.log'));
  });

  it('lines of one turn leave together, after the turn', async () => {
    const writes: string[] = [];
    // A custom output is written to directly (tests and embedders see each line at once) …
    const direct = createLogger({ format: 'json' }, {}, { write: (l) => void writes.push(l) });
    direct.info('a');
    assert.equal(writes.length, 1);
    // … stdout is written once per turn.
    const r = await run(`
      const { writeSync } = await import('node:fs');
      const real = process.stdout.write.bind(process.stdout);
      let calls = 0;
      process.stdout.write = (chunk, ...rest) => { calls++; return real(chunk, ...rest); };
      for (let i = 0; i < 3; i++) log.info('line', { n: i });
      writeSync(2, 'writes during the turn: ' + calls + '\\n');
      await new Promise((r) => setImmediate(r));
      writeSync(2, 'writes after it: ' + calls + '\\n');`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /writes during the turn: 0\nwrites after it: 1\n/);
    assert.deepEqual(numbers(r.stdout), [0, 1, 2]);
  });

  it('redacts secret field names given to a child logger or a line', () => {
    const lines: string[] = [];
    const log = createLogger({ format: 'json' }, { password: 'base-secret' }, { write: (l) => void lines.push(l) });
    log.child({ token: 'child-secret', user: 'alice' }).info('x', { credential: 'line-secret', n: 1 });
    const e = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.deepEqual([e.password, e.token, e.credential, e.user, e.n], ['[redacted]', '[redacted]', '[redacted]', 'alice', 1]);
    assert.ok(!lines[0]!.includes('secret'));
  });
});
