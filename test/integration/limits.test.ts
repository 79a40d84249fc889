import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import pg from 'pg';
import { encodeStartupMessage } from '../../src/protocol/index.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { startPgwardProcess, type PgwardProcess } from '../helpers/pgward-process.js';
import { RawClient } from '../helpers/raw-client.js';
import { metricValue } from '../helpers/scrape.js';
import { until } from '../helpers/wait.js';
import { proxyShim } from '../helpers/proxy-shim.js';

/*
 * Limits and auth-failure throttling (SPEC §2, §5) on a real `pgward start` process in front of
 * a real PostgreSQL: --maxConnections, --maxConnectionsPerUser and --throttleAfter, checked
 * through SQLSTATEs and messages a real client gets, pgward's log events and its metrics.
 */

type Key = Awaited<ReturnType<typeof generateKeyPair>>;



/** The metrics URL announced in the 'pgward listening' event, and a scraper for it. */
async function metricsOf(proxy: PgwardProcess): Promise<() => Promise<string>> {
  const url = String((await proxy.waitFor('pgward listening')).metrics);
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
  return async () => (await fetch(url)).text();
}

interface LoginResult {
  ok: boolean;
  code?: string;
  severity?: string;
  message?: string;
  hint?: string;
}

/** An open pg session (or the error its login got). */
async function open(port: number, user: string, password: string): Promise<{ client?: pg.Client; error?: LoginResult }> {
  const client = new pg.Client({ host: '127.0.0.1', port, user, password, database: 'postgres', connectionTimeoutMillis: 10_000 });
  client.on('error', () => {});
  try {
    await client.connect();
    return { client };
  } catch (err) {
    await client.end().catch(() => {});
    const e = err as Error & { code?: string; severity?: string; hint?: string };
    return { error: { ok: false, code: e.code, severity: e.severity, message: e.message, hint: e.hint } };
  }
}

/** Logs in, runs a query, logs out. */
async function login(port: number, user: string, password: string): Promise<LoginResult> {
  const { client, error } = await open(port, user, password);
  if (!client) return error!;
  try {
    const r = await client.query<{ u: string }>('select current_user as u');
    assert.equal(r.rows[0]!.u, user);
    return { ok: true };
  } finally {
    await client.end().catch(() => {});
  }
}


/** The v1 PROXY line that presents `address:port` as the client (TCP4 or TCP6 by the address). */
function proxyLine(address: string, port: number): Buffer {
  const six = address.includes(':');
  return Buffer.from(`PROXY ${six ? 'TCP6' : 'TCP4'} ${address} ${six ? '::1' : '127.0.0.1'} ${port} 13013\r\n`, 'latin1');
}

/** A stand-in load balancer presenting every client as `address:port`. */
function fromAddress(target: number, address: string, port: number): Promise<AsyncDisposable & { port: number }> {
  return proxyShim(target, () => proxyLine(address, port));
}

/** A log event's client field is `address:port` (IPv6 either bracketed or not). */
function isClient(e: Record<string, unknown>, address: string, port?: number): boolean {
  const c = String(e.client ?? '');
  if (port === undefined) return c.startsWith(`${address}:`) || c.startsWith(`[${address}]:`);
  return c === `${address}:${port}` || c === `[${address}]:${port}`;
}

describe('limits and auth-failure throttling (a real pgward process)', () => {
  let cluster: PgCluster;
  let dir: string;
  let key: Key;
  let stranger: Key;
  let jwtArgs: string[];
  const tokens = new Map<string, string>();
  let forged: string;

  before(async () => {
    cluster = await PgCluster.start({
      hba: ['host all all 127.0.0.1/32 scram-sha-256'],
      users: [{ name: 'alice', password: 'alice-pw' }, { name: 'bob', password: 'bob-pw' }],
    });
    dir = await mkdtemp(join(tmpdir(), 'pgward-limits-'));
    key = await generateKeyPair('EdDSA', { extractable: true });
    stranger = await generateKeyPair('EdDSA', { extractable: true });
    await writeFile(join(dir, 'key.pem'), await exportSPKI(key.publicKey));
    await writeFile(join(dir, 'backends.json'), JSON.stringify({
      alice: `${cluster.url('alice', 'alice-pw')}?sslmode=disable`,
      bob: `${cluster.url('bob', 'bob-pw')}?sslmode=disable`,
    }));
    const mint = (k: Key, sub: string) => new SignJWT({ sub }).setProtectedHeader({ alg: 'EdDSA' }).setIssuedAt().setExpirationTime('30m').sign(k.privateKey);
    for (const u of ['alice', 'bob']) tokens.set(u, await mint(key, u));
    // Well-formed, for a known user, but signed by a key pgward does not trust.
    forged = await mint(stranger, 'alice');
    jwtArgs = ['--insecure', '--backends', join(dir, 'backends.json'), '--signingKeys', join(dir, 'key.pem'), '--metricsAddr', '127.0.0.1:0'];
  });

  after(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const tokenOf = (user: string) => tokens.get(user)!;

  it('--maxConnections N: the next client gets FATAL 53300, the others keep working, a freed slot is reused', async () => {
    await using proxy = await startPgwardProcess([...jwtArgs, '--maxConnections', '2']);
    const scrape = await metricsOf(proxy);
    assert.equal((await proxy.waitFor('pgward listening')).max_connections, 2);

    const first = await open(proxy.port, 'alice', tokenOf('alice'));
    const second = await open(proxy.port, 'bob', tokenOf('bob'));
    assert.ok(first.client && second.client, 'two sessions fit');
    try {
      await first.client.query('select 1');
      await second.client.query('select 1');

      // A real client over the limit.
      const mark = proxy.events.length;
      const third = await open(proxy.port, 'alice', tokenOf('alice'));
      assert.equal(third.client, undefined, 'the third connection is refused');
      assert.equal(third.error!.code, '53300');
      assert.equal(third.error!.severity, 'FATAL');
      assert.match(third.error!.message!, /too many clients/);

      // A raw socket over the limit gets the ErrorResponse without sending anything, then EOF.
      {
        await using raw = await RawClient.connect(proxy.port);
        await raw.closedWithin(5_000, 'refused raw connection');
        assert.deepEqual(raw.errors().map((e) => [e.severity, e.code]), [['FATAL', '53300']]);
        assert.equal(raw.messages.length, 1, 'nothing but the ErrorResponse');
      }

      // Refusals by a limit are logged at most once per 10 s and limit (the rest are counted).
      const refusals = proxy.events.slice(mark).filter((e) => e.msg === 'connection refused: over a connection limit');
      assert.equal(refusals.length, 1);
      assert.ok(refusals.every((e) => e.limit === 2 && e.level === 'warn' && e.reason === 'max_connections'));
      assert.ok(!proxy.events.slice(mark).some((e) => e.msg === 'session started'), 'no session started over the limit');

      // The sessions already in are untouched.
      assert.equal((await first.client.query<{ n: number }>('select 41 + 1 as n')).rows[0]!.n, 42);
      assert.equal((await second.client.query<{ u: string }>('select current_user as u')).rows[0]!.u, 'bob');

      let m = await scrape();
      assert.equal(metricValue(m, 'pgward_connections_total', { result: 'refused' }), 2);
      assert.equal(metricValue(m, 'pgward_connections_total', { result: 'accepted' }), 2);
      assert.equal(metricValue(m, 'pgward_connections_active'), 2);

      // Freeing a slot lets the next client in — and the limit still holds after it.
      await first.client.end();
      await until(async () => metricValue(await scrape(), 'pgward_connections_active') === 1, 5_000, 'the closed session to leave');
      const fourth = await open(proxy.port, 'alice', tokenOf('alice'));
      assert.ok(fourth.client, `the freed slot is reusable (${fourth.error?.message})`);
      try {
        assert.equal((await fourth.client.query<{ u: string }>('select current_user as u')).rows[0]!.u, 'alice');
        const fifth = await open(proxy.port, 'bob', tokenOf('bob'));
        assert.equal(fifth.error?.code, '53300', 'two sessions again: the next is refused');
      } finally {
        await fourth.client.end().catch(() => {});
      }
      m = await scrape();
      assert.equal(metricValue(m, 'pgward_connections_total', { result: 'refused' }), 3);
      assert.equal(metricValue(m, 'pgward_connections_total', { result: 'accepted' }), 3);
      assert.equal(proxy.child.exitCode, null);
    } finally {
      await first.client?.end().catch(() => {});
      await second.client?.end().catch(() => {});
    }
  });

  it('--maxConnectionsPerUser 1: a second session of the same user gets FATAL 53300 with a hint; other users are unaffected', async () => {
    await using proxy = await startPgwardProcess([...jwtArgs, '--maxConnectionsPerUser', '1']);
    const a1 = await open(proxy.port, 'alice', tokenOf('alice'));
    assert.ok(a1.client, `alice's first session (${a1.error?.message})`);
    try {
      const mark = proxy.events.length;
      const a2 = await open(proxy.port, 'alice', tokenOf('alice'));
      assert.equal(a2.client, undefined, "alice's second session is refused");
      assert.equal(a2.error!.code, '53300');
      assert.equal(a2.error!.severity, 'FATAL');
      assert.equal(a2.error!.message, 'too many connections for user "alice"');
      assert.match(a2.error!.hint ?? '', /At most 1 session/);
      const refused = await proxy.waitFor('connection refused', 5_000, mark);
      assert.equal(refused.sqlstate, '53300');
      assert.match(String(refused.reason), /too many connections for user "alice"/);
      assert.equal(proxy.events.slice(mark).filter((e) => e.msg === 'session started').length, 0);

      // Another user gets in; alice's first session still works.
      assert.deepEqual(await login(proxy.port, 'bob', tokenOf('bob')), { ok: true });
      assert.equal((await a1.client.query<{ u: string }>('select current_user as u')).rows[0]!.u, 'alice');
    } finally {
      await a1.client?.end().catch(() => {});
    }
    // Once alice's session has ended she may open one again (the count drops when pgward sees the close).
    let again: LoginResult = { ok: false };
    await until(async () => (again = await login(proxy.port, 'alice', tokenOf('alice'))).ok || again.code !== '53300', 5_000, "alice's slot to be freed");
    assert.deepEqual(again, { ok: true });
    const a3 = await open(proxy.port, 'alice', tokenOf('alice'));
    assert.ok(a3.client);
    try {
      assert.equal((await open(proxy.port, 'alice', tokenOf('alice'))).error?.code, '53300', 'the limit holds again');
    } finally {
      await a3.client.end().catch(() => {});
    }
  });

  it('--throttleAfter 2: an address that keeps failing is delayed 1 s doubling, then refused with 53300 and a hint; others are unaffected; a success resets it', async () => {
    await using proxy = await startPgwardProcess([...jwtArgs, '--proxyProtocol', '--throttleAfter', '2']);
    const scrape = await metricsOf(proxy);
    const delays = (address: string, since = 0) =>
      proxy.events.slice(since).filter((e) => e.msg === 'login delayed after repeated failures' && isClient(e, address));
    const via = async (address: string, port: number, user: string, password: string): Promise<LoginResult> => {
      await using lb = await fromAddress(proxy.port, address, port);
      return await login(lb.port, user, password);
    };
    const A = '192.0.2.10';
    const B = '192.0.2.20';
    const C = '192.0.2.30';

    // Two failed logins from A (every connection physically comes from 127.0.0.1).
    for (const port of [5001, 5002]) {
      const mark = proxy.events.length;
      const r = await via(A, port, 'alice', forged);
      assert.equal(r.code, '28P01');
      assert.equal(r.message, 'signature invalid');
      const ev = await proxy.waitFor('authentication failed', 5_000, mark);
      assert.ok(isClient(ev, A, port), `logged client ${String(ev.client)}`);
      assert.equal(ev.sqlstate, '28P01');
    }
    assert.deepEqual(delays(A), [], 'two failures are not yet throttled');

    // B, and the real peer address (PROXY UNKNOWN), log in at once.
    assert.deepEqual(await via(B, 6001, 'bob', tokenOf('bob')), { ok: true });
    {
      await using lb = await proxyShim(proxy.port, () => Buffer.from('PROXY UNKNOWN\r\n'));
      assert.deepEqual(await login(lb.port, 'bob', tokenOf('bob')), { ok: true });
    }
    assert.equal(proxy.events.filter((e) => e.msg === 'login delayed after repeated failures').length, 0);

    // A's next attempts wait 1 s, 2 s, 4 s … — each attempt still waiting counts as a failure,
    // so attempts opened one after another escalate without the test having to wait them out.
    const waiting: RawClient[] = [];
    try {
      const seen: unknown[] = [];
      for (let i = 0; i < 6; i++) {
        const mark = proxy.events.length;
        const raw = await RawClient.connect(proxy.port);
        waiting.push(raw);
        raw.write(Buffer.concat([proxyLine(A, 7000 + i), encodeStartupMessage([['user', 'alice'], ['database', 'postgres']])]));
        const ev = await proxy.waitFor('login delayed after repeated failures', 5_000, mark);
        assert.ok(isClient(ev, A, 7000 + i), `logged client ${String(ev.client)}`);
        seen.push(ev.delay_ms);
      }
      assert.deepEqual(seen, [1000, 2000, 4000, 8000, 16000, 32000]);

      // Past 60 s the attempt is refused at once: FATAL 53300 with a clear message and a hint.
      const mark = proxy.events.length;
      const refused = await via(A, 7100, 'alice', tokenOf('alice'));
      assert.equal(refused.code, '53300');
      assert.equal(refused.severity, 'FATAL');
      assert.equal(refused.message, 'too many failed login attempts from this address');
      assert.match(refused.hint ?? '', /^Try again in \d+ s\.$/);
      const ev = await proxy.waitFor('connection refused', 5_000, mark);
      assert.ok(isClient(ev, A, 7100), `logged client ${String(ev.client)}`);
      assert.equal(ev.sqlstate, '53300');
      assert.equal(ev.reason, 'too many failed login attempts from this address');
      assert.equal(delays(A, mark).length, 0, 'a refused attempt is not delayed first');
      assert.equal(proxy.events.slice(mark).filter((e) => e.msg === 'session started').length, 0);

      // A raw client sees the same, before any password is asked.
      {
        await using raw = await RawClient.connect(proxy.port);
        raw.write(Buffer.concat([proxyLine(A, 7101), encodeStartupMessage([['user', 'alice'], ['database', 'postgres']])]));
        await raw.closedWithin(5_000, 'throttled raw connection');
        assert.deepEqual(raw.errors().map((e) => [e.severity, e.code]), [['FATAL', '53300']]);
        assert.ok(!raw.messages.some((m) => m.type === 'Authentication'), 'no password is asked');
      }

      // Meanwhile B is not affected at all.
      const markB = proxy.events.length;
      assert.deepEqual(await via(B, 6002, 'bob', tokenOf('bob')), { ok: true });
      assert.deepEqual(delays(B, markB), []);
    } finally {
      for (const raw of waiting) raw.socket.destroy();
    }
    assert.equal(proxy.child.exitCode, null, 'pgward still runs');

    // A success resets the count: C fails twice, is delayed once and logs in; after that two more
    // failures are again not delayed (without the reset, the next attempt would be).
    for (const port of [8001, 8002]) assert.equal((await via(C, port, 'alice', forged)).code, '28P01');
    let mark = proxy.events.length;
    assert.deepEqual(await via(C, 8003, 'alice', tokenOf('alice')), { ok: true });
    assert.deepEqual(delays(C, mark).map((e) => e.delay_ms), [1000], 'the third attempt was delayed 1 s');
    mark = proxy.events.length;
    for (const port of [8004, 8005]) assert.equal((await via(C, port, 'alice', forged)).code, '28P01');
    assert.deepEqual(delays(C, mark), [], 'after the success, failures start from zero');
    assert.deepEqual(await via(C, 8006, 'alice', tokenOf('alice')), { ok: true });
    assert.deepEqual(delays(C, mark).map((e) => e.delay_ms), [1000], 'and are throttled again only after two of them');

    // Metrics: every refused token and the throttled refusal are failed auth attempts.
    const m = await scrape();
    // A: 2 + 2 throttled refusals; C: 2 + 2.
    assert.equal(metricValue(m, 'pgward_auth_attempts_total', { provider: 'jwt', result: 'failure' }), 8);
    assert.equal(metricValue(m, 'pgward_auth_attempts_total', { provider: 'jwt', result: 'failure', reason: 'signature_invalid' }), 6);
    // B 2, UNKNOWN 1, C 2.
    assert.equal(metricValue(m, 'pgward_auth_attempts_total', { provider: 'jwt', result: 'success' }), 5);
  });

  it('IPv6 clients are throttled per /64 network', async () => {
    await using proxy = await startPgwardProcess([...jwtArgs, '--proxyProtocol', '--throttleAfter', '1']);
    const via = async (address: string, port: number, password: string): Promise<LoginResult> => {
      await using lb = await fromAddress(proxy.port, address, port);
      return await login(lb.port, 'alice', password);
    };
    const delayed = (since: number) => proxy.events.slice(since).filter((e) => e.msg === 'login delayed after repeated failures');
    assert.equal((await via('2001:db8:1:2::a', 9001, forged)).code, '28P01');
    // Another host of the same /64 is delayed …
    let mark = proxy.events.length;
    assert.deepEqual(await via('2001:db8:1:2::b', 9002, tokenOf('alice')), { ok: true });
    assert.equal(delayed(mark).length, 1);
    assert.ok(isClient(delayed(mark)[0]!, '2001:db8:1:2::b', 9002), String(delayed(mark)[0]!.client));
    // … while the neighbouring /64 is not, though its neighbour has just failed again.
    assert.equal((await via('2001:db8:1:2::c', 9003, forged)).code, '28P01');
    mark = proxy.events.length;
    assert.deepEqual(await via('2001:db8:1:3::a', 9004, tokenOf('alice')), { ok: true });
    assert.deepEqual(delayed(mark), []);
  });

  it('a throttled refusal is counted under its own reason in pgward_auth_attempts_total', async () => {
    await using proxy = await startPgwardProcess([...jwtArgs, '--proxyProtocol', '--throttleAfter', '1']);
    const scrape = await metricsOf(proxy);
    const A = '198.51.100.66';
    {
      await using lb = await fromAddress(proxy.port, A, 1);
      assert.equal((await login(lb.port, 'alice', forged)).code, '28P01');
    }
    const waiting: RawClient[] = [];
    try {
      for (let i = 0; i < 6; i++) {
        const mark = proxy.events.length;
        const raw = await RawClient.connect(proxy.port);
        waiting.push(raw);
        raw.write(proxyLine(A, 100 + i));
        await proxy.waitFor('login delayed after repeated failures', 5_000, mark);
      }
      await using lb = await fromAddress(proxy.port, A, 200);
      assert.equal((await login(lb.port, 'alice', tokenOf('alice'))).code, '53300');
    } finally {
      for (const raw of waiting) raw.socket.destroy();
    }
    assert.equal(metricValue(await scrape(), 'pgward_auth_attempts_total', { provider: 'jwt', result: 'failure', reason: 'throttled' }), 1);
  });

  it('passthrough: passwords the backend refuses count as failed logins and are throttled', async () => {
    await using proxy = await startPgwardProcess([
      '--insecure', '--auth', 'passthrough', '--backend', `${cluster.url('alice')}?sslmode=disable`, '--no-credsOverride', '--throttleAfter', '1',
    ]);
    const r = await login(proxy.port, 'alice', 'wrong-password');
    assert.equal(r.code, '28P01', 'PostgreSQL refuses the password');
    const mark = proxy.events.length;
    assert.deepEqual(await login(proxy.port, 'alice', 'alice-pw'), { ok: true });
    assert.equal(proxy.events.slice(mark).filter((e) => e.msg === 'login delayed after repeated failures').length, 1,
      'the attempt after a refused password is delayed');
  });
});

