import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { freePort } from '../helpers/ports.js';
import { runPsql } from '../helpers/psql.js';

/** The compiled test lives in dist/test/integration: the repository root is three levels up. */
const BIN = fileURLToPath(new URL('../../../bin/pgward.js', import.meta.url));

interface Demo {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function spawnDemo(args: string[]): Demo {
  const child = spawn(process.execPath, [BIN, 'demo', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PGWARD_'))) },
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves once the banner is complete (its last line), rejects if the demo exits first. */
async function banner(demo: Demo, ms = 90_000): Promise<string> {
  const ready = new Promise<string>((resolve, reject) => {
    const check = () => {
      if (/Press Ctrl-C to stop\./.test(demo.stdout())) {
        demo.child.stdout!.off('data', check);
        resolve(demo.stdout());
      }
    };
    demo.child.stdout!.on('data', check);
    check();
    void demo.exited.then(({ code }) => reject(new Error(`demo exited (${code}) before its banner; stderr: ${demo.stderr()}`)));
  });
  return within(ready, ms, `demo banner; stderr so far: ${demo.stderr()}`);
}

interface Printed {
  token: string;
  psqlUrl: string;
  url: string;
  keyDir: string;
  tokenCommand: string;
}

function parseBanner(text: string): Printed {
  const psql = /^\s*PGPASSWORD='([^']+)' psql "([^"]+)"\s*$/m.exec(text);
  assert.ok(psql, `no psql command line in:\n${text}`);
  const url = /^\s*(postgres:\/\/[^\s@]+@\S+)\s*$/m.exec(text);
  assert.ok(url, `no connection URL in:\n${text}`);
  // `npx pgward`: a bare `pgward` is not on PATH after `npm install` in a checkout.
  const key = /^More tokens: +(npx pgward token --key (\S+)\/private\.pem --sub demo.*)$/m.exec(text);
  assert.ok(key, `no token command in:\n${text}`);
  return { token: psql[1]!, psqlUrl: psql[2]!, url: url[1]!, keyDir: key[2]!, tokenCommand: key[1]! };
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function count(connectionString: string, table = 'demo'): Promise<number> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    const r = await client.query<{ n: number }>(`select count(*)::int as n from ${table}`);
    return r.rows[0]!.n;
  } finally {
    await client.end();
  }
}

/** SIGINT, then the demo must exit 0 within a few seconds. */
async function interrupt(demo: Demo): Promise<void> {
  demo.child.kill('SIGINT');
  const { code, signal } = await within(demo.exited, 10_000, 'exit after SIGINT');
  assert.equal(signal, null, demo.stderr());
  assert.equal(code, 0, demo.stderr());
}

describe('pgward demo', { timeout: 240_000 }, () => {
  const running: Demo[] = [];
  let scratch: string;
  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'pgward-demo-test-'));
  });
  after(async () => {
    for (const d of running) if (d.child.exitCode === null && d.child.signalCode === null) d.child.kill('SIGKILL');
    await rm(scratch, { recursive: true, force: true });
  });
  const start = (args: string[]) => {
    const d = spawnDemo(args);
    running.push(d);
    return d;
  };
  /**
   * A demo on a port free a moment ago, and its banner. Tests run two at a time and connect a
   * lot: the kernel can give that port to another test's outgoing connection before the demo
   * binds it (a CI run once failed so). Then, and only then, another port is tried.
   */
  const startOnFreePort = async (args: string[]): Promise<{ demo: Demo; port: number; text: string }> => {
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const demo = start(['--port', String(port), ...args]);
      try {
        return { demo, port, text: await banner(demo) };
      } catch (err) {
        if (attempt >= 3 || !/is already in use/.test(demo.stderr())) throw err;
      }
    }
  };

  it('prints a working psql command line and URL; SIGINT stops it cleanly and removes the keys', async () => {
    const { demo, port, text } = await startOnFreePort([]);
    const printed = parseBanner(text);
    assert.equal(printed.psqlUrl, `postgres://demo@127.0.0.1:${port}/postgres?sslmode=disable`);
    assert.equal(printed.url, `postgres://demo:${printed.token}@127.0.0.1:${port}/postgres?sslmode=disable`);
    assert.ok(await exists(join(printed.keyDir, 'private.pem')), 'the key directory exists while the demo runs');
    // Nothing secret besides the demo token: no PEM material on the terminal.
    assert.doesNotMatch(text + demo.stderr(), /BEGIN [A-Z ]*KEY/);

    const r = await runPsql([printed.psqlUrl, '-c', 'select count(*) from demo'], { PGPASSWORD: printed.token });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '5');

    assert.equal(await count(printed.url), 5);
    // The printed token command works as printed, in the checkout (where `npx` finds pgward).
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('npm_')));
    const minted = execFileSync('sh', ['-c', printed.tokenCommand], { cwd: fileURLToPath(new URL('../../../', import.meta.url)), env, encoding: 'utf8' }).trim();
    assert.equal(await count(printed.url.replace(printed.token, minted)), 5);
    // Several sessions at once: PGlite's socket server multiplexes them onto its one session.
    const counts = await Promise.all([count(printed.url), count(printed.url), count(printed.url)]);
    assert.deepEqual(counts, [5, 5, 5]);

    const bad = await runPsql([printed.psqlUrl, '-c', 'select 1'], { PGPASSWORD: printed.token.slice(0, -4) + 'AAAA' });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /signature/i);

    await interrupt(demo);
    assert.equal(await exists(printed.keyDir), false, 'the temporary key directory is removed');
  });

  it('--data keeps the database across runs', async () => {
    const data = join(scratch, 'pgdata');
    const { demo: first, text: firstText } = await startOnFreePort(['--data', data]);
    const one = parseBanner(firstText);
    const client = new pg.Client({ connectionString: one.url });
    await client.connect();
    await client.query(`insert into demo (id, name, note) values (6, 'foxtrot', 'kept on disk')`);
    await client.end();
    await interrupt(first);

    const { demo: second, text: secondText } = await startOnFreePort(['--data', data]);
    const two = parseBanner(secondText);
    assert.notEqual(two.token, one.token, 'a fresh key and token each run');
    assert.equal(await count(two.url), 6, 'the seed is not repeated and the new row is kept');
    await interrupt(second);
  });

  it('says clearly when the port is taken, exit 1, before starting the database', async () => {
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen({ host: '127.0.0.1', port: 0 }, resolve));
    const port = (busy.address() as { port: number }).port;
    try {
      const demo = start(['--port', String(port)]);
      const { code } = await within(demo.exited, 10_000, 'exit on a busy port');
      assert.equal(code, 1);
      assert.match(demo.stderr(), new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use.*--port`));
      assert.doesNotMatch(demo.stderr(), /starting PGlite/);
    } finally {
      busy.close();
    }
  });

  it('bad usage exits 2 with one line; --help exits 0', async () => {
    for (const args of [['--port', 'abc'], ['--nope'], ['--backend', 'mysql://x'], ['--data', 'd', '--backend', 'postgres://h/db']]) {
      const demo = start(args);
      const { code } = await within(demo.exited, 10_000, `exit for ${args.join(' ')}`);
      assert.equal(code, 2, `${args.join(' ')}: ${demo.stderr()}`);
      assert.match(demo.stderr(), /^pgward demo: .+\n$/);
    }
    const help = start(['--help']);
    const { code } = await within(help.exited, 10_000, 'exit for --help');
    assert.equal(code, 0);
    assert.match(help.stdout(), /Usage: pgward demo \[--port N\] \[--data DIR\] \[--backend URL\]/);
  });
});
