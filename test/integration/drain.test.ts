import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { encodeStartupMessage, fe, type BackendMessage } from '../../src/protocol/index.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { startPgwardProcess, type PgwardProcess } from '../helpers/pgward-process.js';
import { RawClient } from '../helpers/raw-client.js';
import { until } from '../helpers/wait.js';

/** What a client saw of the end of its session. */
interface Ending {
  /** The first error the client got outside a query (pg emits those as 'error'). */
  error: Promise<{ code?: string; severity?: string; at: number }>;
  /** The connection ended. */
  ended: Promise<number>;
  /** Whether an error or the end has been seen so far. */
  over(): boolean;
}

/** A pg client through the proxy that records how its session ends; never throws on 'error'. */
async function connectWatched(port: number): Promise<{ client: pg.Client; ending: Ending }> {
  const client = new pg.Client({ connectionString: `postgres://app@127.0.0.1:${port}/postgres?sslmode=disable` });
  let onError!: (e: { code?: string; severity?: string; at: number }) => void;
  const error = new Promise<{ code?: string; severity?: string; at: number }>((r) => (onError = r));
  let over = false;
  client.on('error', (e: Error & { code?: string; severity?: string }) => {
    over = true;
    onError({ code: e.code, severity: e.severity, at: Date.now() });
  });
  const ended = new Promise<number>((r) =>
    client.once('end', () => {
      over = true;
      r(Date.now());
    }),
  );
  await client.connect();
  return { client, ending: { error, ended, over: () => over } };
}


function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_r, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms))),
  ]);
}

/** Resolves with the error code of a TCP connect attempt ('connected' if it succeeded). */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

/** A raw protocol client logged in as app (trust on the backend, so no password exchange). */
async function rawLogin(port: number): Promise<RawClient> {
  const c = await RawClient.connect(port);
  c.write(encodeStartupMessage([['user', 'app'], ['database', 'postgres']]));
  await until(() => c.messages.some((m) => m.type === 'ReadyForQuery'), 10_000, 'raw client login');
  return c;
}

/** Parse/Bind/Execute/Sync for one statement (unnamed statement and portal). */
function extendedBatch(sql: string): Buffer {
  return Buffer.concat([
    fe.parse({ name: '', sql, paramTypes: [] }).raw,
    fe.bind({ portal: '', statement: '', paramFormats: [], params: [], resultFormats: [] }).raw,
    fe.execute().raw,
    fe.sync().raw,
  ]);
}

/** Message types with the protocol's asynchronous chatter left out. */
function types(ms: readonly BackendMessage[]): string[] {
  return ms.filter((m) => m.type !== 'NoticeResponse' && m.type !== 'ParameterStatus').map((m) => m.type);
}

function errorCode(m: BackendMessage | undefined): string | undefined {
  return m?.type === 'ErrorResponse' ? m.body().code : undefined;
}

async function countRows(cluster: PgCluster, table: string): Promise<number> {
  return Number((await cluster.sql<{ n: string }>(`select count(*)::int as n from ${table}`)).rows[0]!.n);
}

describe('drain on SIGTERM (a real pgward process, default pipeline = drain-gate)', () => {
  let cluster: PgCluster;

  before(async () => {
    cluster = await PgCluster.start({ users: [{ name: 'app' }] });
    await cluster.sql('create table drain_t (id int); grant all on drain_t to app; create table grace_t (id int); grant all on grace_t to app');
  });

  after(async () => {
    await cluster?.stop();
  });

  const start = (grace: string): Promise<PgwardProcess> =>
    startPgwardProcess(['--insecure', '--auth', 'passthrough', '--backend', `${cluster.url('app')}?sslmode=disable`, '--gracePeriod', grace]);

  it('closes the listener, the idle session at once, the pipelined batch and the transaction once they finish, and exits 0', async () => {
    await using proxy = await start('5s');

    const idle = await connectWatched(proxy.port);
    await idle.client.query('select 1');

    const tx = await connectWatched(proxy.port);
    await tx.client.query('begin');
    await tx.client.query('insert into drain_t values (1)');

    await using piped = await rawLogin(proxy.port);
    const mark = piped.messages.length;
    piped.write(Buffer.concat([extendedBatch('select 1 as n, pg_sleep(1.5)'), extendedBatch('select 2 as n, pg_sleep(1.5)')]));
    // Both Syncs must have reached the proxy (and the first statement the backend) before the signal.
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(!types(piped.messages.slice(mark)).includes('ReadyForQuery'), 'no batch answered yet: both are in flight');

    const since = proxy.events.length;
    const t0 = Date.now();
    proxy.signal('SIGTERM');
    const draining = await proxy.waitFor('draining', 5_000, since);
    assert.equal(draining.sessions, 3);

    // The listener closes: new connections are refused (one made in the very moment of the
    // signal may still have been queued by the kernel, hence the short retry).
    let attempt = await tryConnect(proxy.port);
    for (let i = 0; i < 20 && attempt !== 'ECONNREFUSED'; i++) {
      await new Promise((r) => setTimeout(r, 25));
      attempt = await tryConnect(proxy.port);
    }
    assert.equal(attempt, 'ECONNREFUSED');

    // The idle session is closed right away with FATAL 57P01.
    const idleErr = await within(idle.ending.error, 2_000, 'idle session closed');
    assert.equal(idleErr.code, '57P01');
    assert.ok(idleErr.at - t0 < 1_500, `idle session closed ${idleErr.at - t0} ms after SIGTERM`);
    await within(idle.ending.ended, 2_000, 'idle connection ended');

    // The transaction goes on: more statements, then commit; then the session is closed.
    await tx.client.query('insert into drain_t values (2)');
    const seen = await tx.client.query<{ n: number }>('select count(*)::int as n from drain_t');
    assert.equal(seen.rows[0]!.n, 2);
    assert.equal(tx.ending.over(), false, 'the transaction session is still open before commit');
    await tx.client.query('commit');
    const txErr = await within(tx.ending.error, 2_000, 'transaction session closed after commit');
    assert.equal(txErr.code, '57P01');
    assert.equal(await countRows(cluster, 'drain_t'), 2, 'the transaction committed both rows');

    // The pipelined batch: every result of both batches first, then 57P01, then the connection ends.
    await within(piped.closed, 6_000, 'pipelined session closed');
    const got = piped.messages.slice(mark);
    const batch = ['ParseComplete', 'BindComplete', 'DataRow', 'CommandComplete', 'ReadyForQuery'];
    assert.deepEqual(types(got), [...batch, ...batch, 'ErrorResponse']);
    const rows = got.filter((m) => m.type === 'DataRow').map((m) => (m.type === 'DataRow' ? m.body().values[0]?.toString() : ''));
    assert.deepEqual(rows, ['1', '2']);
    assert.equal(errorCode(got[got.length - 1]), '57P01');
    const last = got[got.length - 1]!;
    assert.equal(last.type === 'ErrorResponse' ? last.body().severity : undefined, 'FATAL');

    // The process exits 0 well within the grace period.
    const code = await within(proxy.exited, 5_000, 'pgward exit');
    assert.equal(code, 0);
    assert.ok(Date.now() - t0 < 5_000, `exited ${Date.now() - t0} ms after SIGTERM (grace period 5 s)`);
    await proxy.waitFor('stopped', 1_000, since);
    await tx.client.end().catch(() => {});
    await idle.client.end().catch(() => {});
  });

  it('closes a session still in a transaction at the grace period and exits 0', async () => {
    await using proxy = await start('1s');
    const tx = await connectWatched(proxy.port);
    await tx.client.query('begin');
    await tx.client.query('insert into grace_t values (1)');

    const since = proxy.events.length;
    const t0 = Date.now();
    proxy.signal('SIGTERM');
    await proxy.waitFor('draining', 5_000, since);
    // Still usable during the grace period.
    await tx.client.query('insert into grace_t values (2)');

    const err = await within(tx.ending.error, 4_000, 'transaction session closed at the grace period');
    assert.equal(err.code, '57P01');
    const at = err.at - t0;
    assert.ok(at >= 800 && at < 3_000, `closed ${at} ms after SIGTERM (grace period 1 s)`);
    const code = await within(proxy.exited, 5_000, 'pgward exit');
    assert.equal(code, 0);
    assert.equal(await countRows(cluster, 'grace_t'), 0, 'the unfinished transaction was not committed');
    await tx.client.end().catch(() => {});
  });

  it('a second SIGTERM during the drain closes every session at once and exits 0', async () => {
    await using proxy = await start('30s');
    const tx = await connectWatched(proxy.port);
    await tx.client.query('begin');
    await tx.client.query('select 1');
    const busy = await connectWatched(proxy.port);
    const sleeping = busy.client.query('select pg_sleep(20)').then(
      () => 'finished',
      (e: Error & { code?: string }) => e.code ?? e.message,
    );
    await new Promise((r) => setTimeout(r, 200));

    const since = proxy.events.length;
    proxy.signal('SIGTERM');
    await proxy.waitFor('draining', 5_000, since);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(tx.ending.over() || busy.ending.over(), false, 'both sessions are still open during the drain');

    const t1 = Date.now();
    proxy.signal('SIGTERM');
    await proxy.waitFor('second signal: closing all sessions now', 5_000, since);
    const txErr = await within(tx.ending.error, 2_000, 'transaction session closed');
    assert.equal(txErr.code, '57P01');
    assert.ok(txErr.at - t1 < 1_500, `transaction session closed ${txErr.at - t1} ms after the second signal`);
    // The query in flight fails with the shutdown error rather than finishing.
    assert.equal(await within(sleeping, 2_000, 'busy session closed'), '57P01');
    await within(busy.ending.ended, 2_000, 'busy connection ended');
    assert.ok(Date.now() - t1 < 2_000, 'both sessions closed at once');

    // The backend of the busy session is still sleeping and does not read the Terminate; the relay
    // destroys such sockets after its 5 s close grace, so the exit may wait that long but no longer.
    const code = await within(proxy.exited, 10_000, 'pgward exit');
    assert.equal(code, 0);
    const exitAfter = Date.now() - t1;
    assert.ok(exitAfter < 7_000, `exited ${exitAfter} ms after the second signal`);
    await tx.client.end().catch(() => {});
    await busy.client.end().catch(() => {});
  });
});
