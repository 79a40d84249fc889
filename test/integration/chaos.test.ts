import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import pg from 'pg';
import { encodeStartupMessage, fe } from '../../src/protocol/index.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { startPgwardProcess, type PgwardProcess } from '../helpers/pgward-process.js';
import { RawClient } from '../helpers/raw-client.js';
import { scrapeMetric } from '../helpers/scrape.js';
import { until } from '../helpers/wait.js';
import { freePort } from '../helpers/ports.js';

// Sessions that end badly — a client that vanishes, a backend terminated under it, garbage on
// the wire, all at awkward moments — must end only themselves: the process keeps serving and
// keeps no socket of theirs. Each case runs on a real `pgward start` process, on both relays.

const RELAYS = [
  { name: 'native relay', args: [] as string[] },
  { name: 'JavaScript relay', args: ['--no-nativeRelay'] },
];

interface Rig {
  cluster: PgCluster;
  proxy: PgwardProcess;
  metricsUrl: string;
}

/** A session logged in through pgward over a raw socket, tagged so its backend can be found. */
async function rawSession(rig: Rig, tag: string): Promise<RawClient> {
  const c = await RawClient.connect(rig.proxy.port);
  c.write(encodeStartupMessage([['user', 'postgres'], ['database', 'postgres'], ['application_name', tag]]));
  await until(() => c.messages.some((m) => m.type === 'Authentication' || m.type === 'ReadyForQuery'), 5_000, `${tag}: asked for a password`);
  if (!c.messages.some((m) => m.type === 'ReadyForQuery')) c.write(fe.password('anything').raw);
  await until(() => c.messages.some((m) => m.type === 'ReadyForQuery'), 5_000, `${tag}: logged in`);
  return c;
}

/** pg_terminate_backend() on the backends of sessions tagged `tag`; resolves to how many. */
async function terminate(rig: Rig, tag: string): Promise<number> {
  const r = await rig.cluster.sql<{ n: string }>(
    'SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE application_name = $1',
    'postgres',
    [tag],
  );
  return Number(r.rows[0]!.n);
}

async function waitActive(rig: Rig, tag: string, pattern: RegExp): Promise<void> {
  await until(async () => {
    const r = await rig.cluster.sql<{ query: string; state: string }>(
      'SELECT query, state FROM pg_stat_activity WHERE application_name = $1',
      'postgres',
      [tag],
    );
    return r.rows.some((row) => row.state === 'active' && pattern.test(row.query));
  }, 10_000, `${tag}: statement running on the backend`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The process is alive and a fresh session through it gets an answer. */
async function assertServing(rig: Rig, what: string): Promise<void> {
  assert.equal(rig.proxy.child.exitCode, null, `pgward still running after ${what}; stderr: ${rig.proxy.stderr.join('')}`);
  const client = new pg.Client({ host: '127.0.0.1', port: rig.proxy.port, user: 'postgres', password: 'x', database: 'postgres' });
  await client.connect();
  try {
    assert.deepEqual((await client.query('select 1 as ok')).rows, [{ ok: 1 }], `a new session works after ${what}`);
  } finally {
    await client.end();
  }
}

type Scenario = (rig: Rig, tag: string) => Promise<void>;

const scenarios: Record<string, Scenario> = {
  // The session is over (client gone, Terminate written, half-closed) when the backend is reset.
  'client vanishes mid-statement, then its backend is terminated': async (rig, tag) => {
    const c = await rawSession(rig, tag);
    c.write(fe.query('select pg_sleep(30)').raw);
    await waitActive(rig, tag, /pg_sleep/);
    c.socket.destroy();
    await sleep(50);
    assert.equal(await terminate(rig, tag), 1);
  },
  'backend terminated while the client streams COPY FROM STDIN': async (rig, tag) => {
    const c = await rawSession(rig, tag);
    c.write(fe.query('copy chaos_sink from stdin').raw);
    await until(() => c.messages.some((m) => m.type === 'CopyInResponse'), 5_000, `${tag}: COPY started`);
    const row = Buffer.from('some text\n'.repeat(400));
    const pump = setInterval(() => {
      if (!c.socket.destroyed) for (let i = 0; i < 8; i++) c.write(fe.copyData(row).raw);
    }, 1);
    try {
      await sleep(100);
      assert.equal(await terminate(rig, tag), 1);
      await c.closedWithin(10_000, `${tag}: client connection`);
    } finally {
      clearInterval(pump);
    }
  },
  'garbage after login': async (rig, tag) => {
    const c = await rawSession(rig, tag);
    const one = Buffer.alloc(1005);
    one[0] = 0x01;
    one.writeInt32BE(1004, 1);
    c.write(Buffer.concat(Array.from({ length: 64 }, () => one)));
    await c.closedWithin(10_000, `${tag}: client connection`);
  },
  'backend terminated mid-result while the client does not read': async (rig, tag) => {
    const c = await rawSession(rig, tag);
    c.socket.pause();
    c.write(fe.query("select repeat('x', 1000) from generate_series(1, 200000)").raw);
    await sleep(200);
    assert.equal(await terminate(rig, tag), 1);
    await sleep(100);
    c.socket.destroy();
  },
  'backend terminated while idle': async (rig, tag) => {
    const c = await rawSession(rig, tag);
    assert.equal(await terminate(rig, tag), 1);
    await c.closedWithin(10_000, `${tag}: client connection`);
  },
  'client resets mid-statement while the backend is answering': async (rig, tag) => {
    const c = await rawSession(rig, tag);
    c.write(fe.query("select repeat('x', 1000) from generate_series(1, 50000)").raw);
    await until(() => c.bytes > 100_000, 10_000, `${tag}: result arriving`);
    c.socket.resetAndDestroy();
    await sleep(20);
    await terminate(rig, tag);
  },
};

/** A small deterministic generator, so a failing random case can be replayed from its seed. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Random steps: valid statements, random bytes, random framed messages, resets and terminations, in random order. */
async function randomSession(rig: Rig, tag: string, seed: number): Promise<void> {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rnd() * xs.length)]!;
  const c = await rawSession(rig, tag);
  const steps = 2 + Math.floor(rnd() * 5);
  for (let i = 0; i < steps && !c.socket.destroyed; i++) {
    const step = pick(['query', 'slow', 'bytes', 'frame', 'terminate', 'reset', 'half', 'pause'] as const);
    switch (step) {
      case 'query':
        c.write(fe.query("select repeat('y', 100) from generate_series(1, 2000)").raw);
        break;
      case 'slow':
        c.write(fe.query('select pg_sleep(0.2)').raw);
        break;
      case 'bytes': {
        const b = Buffer.alloc(1 + Math.floor(rnd() * 3000));
        for (let j = 0; j < b.length; j++) b[j] = Math.floor(rnd() * 256);
        c.write(b);
        break;
      }
      case 'frame': {
        const len = Math.floor(rnd() * 2000);
        const b = Buffer.alloc(5 + len);
        b[0] = pick([0x51, 0x50, 0x42, 0x45, 0x53, 0x64, 0x63, 0x66, 0x01, 0x7a]);
        b.writeInt32BE(rnd() < 0.2 ? Math.floor(rnd() * 2 ** 31) : 4 + len, 1);
        c.write(b);
        break;
      }
      case 'terminate':
        await terminate(rig, tag);
        break;
      case 'reset':
        c.socket.resetAndDestroy();
        break;
      case 'half':
        c.socket.end();
        break;
      case 'pause':
        c.socket.pause();
        break;
    }
    await sleep(Math.floor(rnd() * 60));
  }
  if (rnd() < 0.5) await terminate(rig, tag);
  await sleep(30);
  c.socket.destroy();
}

function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Idle backend connections the pool keeps, over all targets. */
async function pooledIdle(metricsUrl: string): Promise<number> {
  const text = await (await fetch(metricsUrl)).text();
  let n = 0;
  for (const m of text.matchAll(/^pgward_pool_connections\{[^}]*state="idle"[^}]*\} (\d+)$/gm)) n += Number(m[1]);
  return n;
}

for (const relayKind of RELAYS) {
  describe(`chaos on the ${relayKind.name}`, () => {
    it('no session, however it ends, ends the process or leaves a socket behind', { timeout: 180_000 }, async () => {
      await using cluster = await PgCluster.start({ maxConnections: 60 });
      await cluster.sql('create table chaos_sink (t text)');
      const metricsPort = await freePort();
      await using proxy = await startPgwardProcess([
        '--insecure',
        '--auth',
        'passthrough',
        '--backend',
        `${cluster.url('postgres')}?sslmode=disable`,
        '--metricsAddr',
        `127.0.0.1:${metricsPort}`,
        ...relayKind.args,
      ]);
      const rig: Rig = { cluster, proxy, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics` };
      await assertServing(rig, 'start');
      const fdsAtStart = openFds(proxy.child.pid!);
      const idleAtStart = await pooledIdle(rig.metricsUrl);

      let n = 0;
      for (let round = 0; round < 2; round++) {
        for (const [name, scenario] of Object.entries(scenarios)) {
          const tag = `chaos-${n++}`;
          await scenario(rig, tag);
          await sleep(300);
          await assertServing(rig, `"${name}" (round ${round + 1})`);
        }
      }
      const seed = Number(process.env.PGWARD_CHAOS_SEED ?? Date.now() % 100_000);
      for (let i = 0; i < 24; i++) {
        const caseSeed = seed + i;
        await randomSession(rig, `chaos-r${caseSeed}`, caseSeed);
        assert.equal(proxy.child.exitCode, null, `pgward still running after random case ${caseSeed} (PGWARD_CHAOS_SEED=${caseSeed}); stderr: ${proxy.stderr.join('')}`);
      }
      await sleep(500);
      await assertServing(rig, `random cases from seed ${seed}`);

      // Nothing is kept: no session, no client or backend socket beyond the listener's, metrics'
      // and the idle backend connections the pool keeps (clean: idle, no transaction).
      await until(async () => (await scrapeMetric(rig.metricsUrl, 'pgward_connections_active')) === 0, 15_000, 'no connection left active');
      let idle = 0;
      await until(async () => {
        idle = await pooledIdle(rig.metricsUrl);
        const r = await cluster.sql<{ n: string; busy: string }>(
          "SELECT count(*) AS n, count(*) FILTER (WHERE state <> 'idle') AS busy FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        );
        return Number(r.rows[0]!.n) === idle && Number(r.rows[0]!.busy) === 0;
      }, 15_000, 'no backend connection left but the idle pooled ones');
      await until(() => openFds(proxy.child.pid!) <= fdsAtStart - idleAtStart + idle + 1, 15_000, `open descriptors back to ${fdsAtStart} (pooled: ${idleAtStart} then ${idle})`);
      assert.ok(
        !proxy.events.some((e) => e.level === 'error' && /uncaught|unhandled/i.test(String(e.msg))),
        'no uncaught error was logged',
      );
    });
  });
}
