import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../../src/telemetry/log.js';

const LOG_MODULE = fileURLToPath(new URL('../../src/telemetry/log.js', import.meta.url));

interface RunOptions {
  destination?: string;
  /** Reading of the child's stdout stops for this long once it starts (a slow log collector). */
  stallMs?: number;
  /** The child's stdout is closed at once (a collector that went away). */
  closeStdout?: boolean;
}

/** Runs a Node process that logs with pgward's logger (`body` uses `log`), with its stdout piped here. */
function run(body: string, opts: RunOptions = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const script = `
    const { createLogger } = await import(${JSON.stringify(LOG_MODULE)});
    const log = createLogger({ format: 'json', level: 'debug', destination: ${JSON.stringify(opts.destination)} });
    ${body}`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  if (opts.closeStdout) child.stdout.destroy();
  else child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
  if (opts.stallMs) {
    child.stdout.pause();
    setTimeout(() => child.stdout.resume(), opts.stallMs);
  }
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

/** The `n` field of every JSON line, in the order written. */
function numbers(text: string): number[] {
  return text.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { n: number }).n);
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

// Lines logged in one turn, over several turns (awaits), and well over a pipe's 64 KiB in one go.
const LOG_20000 = `
  for (let i = 0; i < 5000; i++) log.info('line', { n: i });
  await new Promise((r) => setImmediate(r));
  for (let i = 5000; i < 10000; i++) { log.info('line', { n: i }); if (i % 1000 === 0) await Promise.resolve(); }
  await new Promise((r) => setTimeout(r, 5));
  for (let i = 10000; i < 20000; i++) log.info('line', { n: i });`;

describe('log lines are all written, in order, however the process ends', () => {
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

  it('the same for --logDestination (appended synchronously), and a reopen sends later lines to a new file', async () => {
    const file = join(dir, 'pgward.log');
    const r = await run(
      `for (let i = 0; i < 3000; i++) log.info('line', { n: i });
       const { renameSync } = await import('node:fs');
       renameSync(${JSON.stringify(file)}, ${JSON.stringify(`${file}.1`)});
       log.reopen();
       for (let i = 3000; i < 6000; i++) log.info('line', { n: i });
       process.exit(0);`,
      { destination: file },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
    assert.deepEqual(numbers(await readFile(`${file}.1`, 'utf8')), range(3000));
    assert.deepEqual(numbers(await readFile(file, 'utf8')), range(3000).map((i) => i + 3000));
    await rename(file, join(dir, 'done.log'));
  });

  it('a log reader that stalls neither stops the event loop nor loses or reorders lines', async () => {
    const r = await run(
      `let ticks = 0;
       const timer = setInterval(() => ticks++, 10);
       for (let i = 0; i < 20000; i++) log.info('line', { n: i });
       await new Promise((done) => setTimeout(done, 400));
       process.stderr.write('ticks while the pipe was full: ' + ticks + '\\n');
       clearInterval(timer);
       for (let i = 20000; i < 21000; i++) log.info('line', { n: i });`,
      { stallMs: 600 },
    );
    assert.equal(r.code, 0, r.stderr);
    const ticks = Number(/ticks while the pipe was full: (\d+)/.exec(r.stderr)?.[1]);
    assert.ok(ticks >= 10, `timers ran while nobody read the log (${ticks} ticks)`);
    assert.deepEqual(numbers(r.stdout), range(21000));
  });

  it('…nor when the lines are held and written a batch at a time (a hand-over\'s lines in one write)', async () => {
    const output = JSON.stringify(fileURLToPath(new URL('../../src/telemetry/log-output.js', import.meta.url)));
    const r = await run(
      `const { holdLines, writeHeldLines } = await import(${output});
       for (let b = 0; b < 300; b++) {
         holdLines();
         for (let i = 0; i < 100; i++) log.info('line', { n: b * 100 + i, pad: 'x'.repeat(b % 7 * 20) });
         writeHeldLines();
       }`,
      { stallMs: 300 },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(numbers(r.stdout), range(30000));
  });

  it('past 8 MiB waiting for a stalled reader, lines are dropped, counted and reported', async () => {
    const r = await run(
      `const pad = 'x'.repeat(200);
       for (let i = 0; i < 60000; i++) log.info('line', { n: i, pad });
       await new Promise((done) => setTimeout(done, 1500));
       log.info('line', { n: 60000 });`,
      { stallMs: 1000 },
    );
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { n?: number; msg: string; lines?: number });
    const report = lines.find((l) => l.msg === 'log lines dropped: the log output was not read fast enough');
    assert.ok(report && report.lines! > 0, 'the drop is reported');
    const kept = lines.filter((l) => l.n !== undefined).map((l) => l.n!);
    assert.equal(kept.length + report.lines!, 60001, 'every line is either written or counted');
    assert.deepEqual(kept, [...kept].sort((a, b) => a - b), 'in order');
    assert.equal(kept.at(-1), 60000, 'lines after the drain are written again');
  });

  it('a reader that goes away leaves the process running, said once on stderr', async () => {
    const r = await run(
      `for (let i = 0; i < 20000; i++) log.info('line', { n: i });
       await new Promise((done) => setTimeout(done, 200));
       for (let i = 0; i < 100; i++) log.info('line', { n: i });
       process.stderr.write('still running\\n');`,
      { closeStdout: true },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /still running/);
    assert.equal(r.stderr.match(/cannot write the log to stdout \(EPIPE/g)?.length, 1, r.stderr);
  });

  it('a log file that cannot be written (ENOSPC) is said once on stderr, and its lines go to stdout', async () => {
    const r = await run(`for (let i = 0; i < 3; i++) log.info('line', { n: i });`, { destination: '/dev/full' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr.match(/cannot write the log file \/dev\/full \(.*ENOSPC.*\); logging to stdout/g)?.length, 1, r.stderr);
    assert.deepEqual(numbers(r.stdout), [0, 1, 2]);
  });

  it('text, json and fluent lines: base fields first, a line field overrides a base one, undefined left out', () => {
    const lines: string[] = [];
    const sink = { write: (l: string) => void lines.push(l) };
    for (const format of ['text', 'json', 'fluent'] as const) {
      const log = createLogger({ format }, { client: '10.0.0.1:5', session: 's1' }, sink).child({ session: 's2', user: 'alice' });
      log.warn('session started', { note: 'two words', quote: 'a"b', user: 'bob', n: 3, ok: true, gone: undefined, obj: { a: 1 } });
    }
    assert.match(
      lines[0]!,
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARN  session started client=10\.0\.0\.1:5 session=s2 user=bob note="two words" quote="a\\"b" n=3 ok=true obj=\{"a":1\}\n$/,
    );
    const json = JSON.parse(lines[1]!) as Record<string, unknown>;
    assert.deepEqual(Object.keys(json), ['time', 'level', 'msg', 'client', 'session', 'user', 'note', 'quote', 'n', 'ok', 'obj']);
    assert.deepEqual([json.level, json.msg, json.session, json.user], ['warn', 'session started', 's2', 'bob']);
    const [tag, at, body] = JSON.parse(lines[2]!) as [string, number, Record<string, unknown>];
    assert.equal(tag, 'pgward');
    assert.ok(Math.abs(at - Date.now() / 1000) < 5);
    assert.deepEqual([body.level, body.msg, body.user, body.client], ['warn', 'session started', 'bob', '10.0.0.1:5']);
  });

  it('a prepared line is the line info() writes with the fixed fields first, whatever its fields', () => {
    // The time (text, JSON) or the seconds (fluent) are the only part that may differ between two lines.
    const untimed = (line: string) => line.replace(/^\S+ /, '').replace(/"time":"[^"]*"/, '').replace(/^\["pgward",\d+,/, '');
    const cases: Record<string, unknown>[] = [
      { statement: 'select ? as "x y"', params: 0, duration_ms: 1.25, rows: 1, sqlstate: undefined, command: 'SELECT' },
      { statement: 'a\nb', params: 2, duration_ms: 0, rows: undefined, sqlstate: '42P01', command: undefined },
      { user: 'bob', n: 1 }, // a fixed field's name: the general path
      { session: 's9' }, // a base field's name
      { msg: 'no', level: 'x' }, // names the line places itself
      { password: 'hunter2', other: undefined }, // a secret's name
      { token: undefined },
      { obj: { a: [1, 'two'] }, big: 1e21, nan: NaN, neg: -0, flag: false, nothing: null },
    ];
    for (const format of ['text', 'json', 'fluent'] as const) {
      const lines: string[] = [];
      const log = createLogger({ format }, { client: '10.0.0.1:5' }, { write: (l) => void lines.push(l) }).child({ session: 's1' });
      const fixed = { event: 'query', session: 's1', user: 'alice', database: 'app' };
      const line = log.prepare!('info', 'query', fixed);
      // Each case again, and in turn with the others: a prepared line keeps the text of values repeated.
      const shared = { a: 1 };
      const changed = [{ obj: shared, n: 1 }, { obj: shared, n: 1 }];
      for (const fields of [...cases, ...cases, ...cases.slice().reverse(), ...changed]) {
        shared.a++; // the same object, with other content: written anew
        line(fields);
        log.info('query', { ...fixed, ...fields });
        const [prepared, general] = lines.splice(0, 2);
        assert.equal(untimed(prepared!), untimed(general!), `${format}: ${JSON.stringify(fields)}`);
        assert.ok(!prepared!.includes('hunter2'));
      }
      // Below the logger's level, nothing.
      const quiet = createLogger({ format, level: 'warn' }, {}, { write: (l) => void lines.push(l) });
      quiet.prepare!('info', 'query', fixed)({ n: 1 });
      assert.deepEqual(lines, []);
    }
  });

  it('writes numbers as String() does: durations of up to three decimals, integers, and any other double', () => {
    const lines: string[] = [];
    const log = createLogger({ format: 'text' }, {}, { write: (l) => void lines.push(l) });
    const values = [0, -0, 1, -1, 0.001, 0.01, 0.1, 0.5, 1.48, 1.2, 10.05, 999.999, -2.5, 123456.789, 1e12 + 0.125, 1e15, 2 ** 53, 1 / 3, 1e-7, 5e-324, 1.7976931348623157e308];
    for (let i = 0; i < 20000; i++) values.push(Math.round(Math.random() * 10 ** (1 + (i % 12))) / 1000, Math.random() * 10 ** (i % 20), -Math.random());
    for (const v of values) log.info('n', { n: v });
    assert.deepEqual(
      lines.map((l) => / n=(\S+)\n$/.exec(l)?.[1]),
      values.map((v) => String(v)),
    );
  });

  it('writes strings as before: JSON-quoted in text lines when they hold whitespace or a quote, JSON strings in json lines', () => {
    const values = ['', 'a', 'a b', 'select * from t where id = ?', 'a"b', 'a\\b', 'a\\ b', 'tab\there', 'nl\n', '\u0000', '\u007f x', 'é x', 'é', '\u00a0', 'a\u2028b', '\ud800 x', '\ud83d\ude00 x', '~ !'];
    for (let i = 0; i < 2000; i++) values.push(Array.from({ length: i % 12 }, () => String.fromCharCode(Math.floor(Math.random() * (i % 3 ? 128 : 0x3000)))).join(''));
    for (const format of ['text', 'json'] as const) {
      const lines: string[] = [];
      const log = createLogger({ format }, {}, { write: (l) => void lines.push(l) });
      const line = log.prepare!('info', 'q', {});
      // A prepared line keeps the text of a value repeated: each is written twice in a row.
      for (const v of values) {
        log.info('s', { s: v });
        line({ s: v });
        line({ s: v });
      }
      const expected = values.map((v) => (format === 'json' ? JSON.stringify(v) : /\s|"/.test(v) ? JSON.stringify(v) : v));
      const written = (l: string) => (format === 'json' ? /,"s":(.*)}\n$/s : / s=(.*)\n$/s).exec(l)?.[1];
      for (let k = 0; k < 3; k++) assert.deepEqual(lines.filter((_, i) => i % 3 === k).map(written), expected);
    }
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
