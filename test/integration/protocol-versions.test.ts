import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import pg from 'pg';
import { encodeCancelRequest, encodeStartupMessage, fe } from '../../src/protocol/index.js';
import { PgCluster, serverOsUser } from '../helpers/pg-cluster.js';
import { freePort } from '../helpers/ports.js';
import type { PgVersion } from '../helpers/pg-versions.js';
import { logEvents, startTestProxy } from '../helpers/proxy.js';
import { RawClient } from '../helpers/raw-client.js';
import { until } from '../helpers/wait.js';

/**
 * SPEC §11: a backend speaking protocol 3.2 (32-byte cancel keys, PostgreSQL 18) works behind
 * clients speaking 3.0, and the reverse; pgward asks backends for 3.2 and older ones negotiate down.
 */

/** Logs in with a hand-made StartupMessage of protocol 3.<minor>; returns the client and its cancel key. */
async function rawLogin(port: number, minor: number): Promise<{ client: RawClient; processId: number; secret: Buffer }> {
  const client = await RawClient.connect(port);
  client.write(encodeStartupMessage([['user', 'postgres'], ['database', 'postgres']], minor));
  await until(() => client.messages.some((m) => m.type === 'ReadyForQuery') || client.errors().length > 0, 10_000, 'login');
  assert.deepEqual(client.errors(), []);
  const key = client.messages.find((m) => m.type === 'BackendKeyData');
  assert.ok(key?.type === 'BackendKeyData', 'the client got a cancel key');
  const { processId, secretKey } = key.body();
  return { client, processId, secret: Buffer.from(secretKey) };
}

/** Sends a CancelRequest on a fresh connection and waits for pgward to close it. */
async function sendCancel(port: number, processId: number, secret: Buffer): Promise<void> {
  const s = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('error', reject));
  s.end(encodeCancelRequest(processId, secret));
  s.resume();
  await new Promise<void>((resolve) => s.once('close', () => resolve()));
}

/** Runs pg_sleep(20) on `client`, cancels it with (processId, secret) and asserts 57014 well before 20 s. */
async function cancelSleep(port: number, client: RawClient, processId: number, secret: Buffer): Promise<void> {
  const started = Date.now();
  client.write(fe.query('select pg_sleep(20)').raw);
  await new Promise((r) => setTimeout(r, 300));
  await sendCancel(port, processId, secret);
  await until(() => client.errors().length > 0, 10_000, 'the query to be cancelled');
  assert.equal(client.errors()[0]!.code, '57014');
  assert.ok(Date.now() - started < 10_000, 'cancelled well before the sleep ended');
}

async function proxyFor(cluster: PgCluster, query = 'sslmode=disable') {
  return startTestProxy(['--insecure', '--auth', 'passthrough', '--backend', `${cluster.url('postgres')}?${query}`]);
}

/** PgBouncer (the machine's, 1.18 on Debian 12) in front of `cluster`, trusting everyone; as the server's OS user when root. */
async function startPgBouncer(cluster: PgCluster): Promise<{ port: number } & AsyncDisposable> {
  const dir = await mkdtemp(join(tmpdir(), 'pgward-pgb-'));
  const owner = await serverOsUser();
  const port = await freePort();
  await writeFile(join(dir, 'users.txt'), '"postgres" ""\n');
  await writeFile(join(dir, 'pgbouncer.ini'), [
    '[databases]', `postgres = host=127.0.0.1 port=${cluster.port}`,
    '[pgbouncer]', 'listen_addr = 127.0.0.1', `listen_port = ${port}`, 'auth_type = trust',
    `auth_file = ${join(dir, 'users.txt')}`, 'unix_socket_dir =', `logfile = ${join(dir, 'pgbouncer.log')}`,
  ].join('\n') + '\n');
  if (owner) await chown(dir, owner.uid, owner.gid);
  const child = spawn('pgbouncer', [join(dir, 'pgbouncer.ini')], { cwd: dir, stdio: 'ignore', ...(owner ? { uid: owner.uid, gid: owner.gid } : {}) });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const dispose = async () => {
    child.kill('SIGKILL');
    await exited;
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await until(() => new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => (s.destroy(), resolve(true))).once('error', () => resolve(false));
    }), 10_000, 'pgbouncer to listen');
  } catch (err) {
    await dispose();
    throw err;
  }
  return { port, [Symbol.asyncDispose]: dispose };
}

const backendProtocol = (logs: string[]) => logEvents(logs, 'session started').map((e) => e.backend_protocol);

describe('protocol 3.2 to backends, cancel keys across protocol versions', () => {
  it('a PostgreSQL 18 backend speaks 3.2 to pgward and issues a 32-byte key, even behind a 3.0 client', async () => {
    await using cluster = await PgCluster.start({ version: 18 });
    // What pgward relies on: asked for 3.2, PostgreSQL 18 answers with a 32-byte secret.
    const direct = await rawLogin(cluster.port, 2);
    await using _direct = direct.client;
    assert.equal(direct.secret.length, 32);

    await using proxy = await proxyFor(cluster);
    const { client, processId, secret } = await rawLogin(proxy.port, 0);
    await using _client = client;
    assert.equal(secret.length, 4, 'a 3.0 client gets a 4-byte key from pgward');
    assert.deepEqual(backendProtocol(proxy.logs), ['3.2']);
    // The cancel goes to the backend with its 32-byte key: PostgreSQL ignores any other.
    await cancelSleep(proxy.port, client, processId, secret);
  });

  it('pg (protocol 3.0) cancels a pg_sleep on a PostgreSQL 18 backend through pgward', async () => {
    await using cluster = await PgCluster.start({ version: 18 });
    await using proxy = await proxyFor(cluster);
    const client = new pg.Client({ connectionString: proxy.url('postgres') });
    await client.connect();
    try {
      const running = assert.rejects(client.query('select pg_sleep(20)'), (e: { code?: string }) => e.code === '57014');
      await until(async () => (await cluster.sql("select 1 from pg_stat_activity where query = 'select pg_sleep(20)'")).rowCount === 1, 5_000, 'the sleep to start');
      const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
      const secret = Buffer.alloc(4);
      secret.writeInt32BE(secretKey);
      await sendCancel(proxy.port, processID, secret);
      await running;
      assert.deepEqual((await client.query('select 1 as ok')).rows, [{ ok: 1 }]);
    } finally {
      await client.end();
    }
    assert.deepEqual(backendProtocol(proxy.logs), ['3.2']);
  });

  for (const version of [15, 14] as const satisfies readonly PgVersion[]) {
    it(`a 3.2 client gets a 32-byte key and cancels on a PostgreSQL ${version} backend, which negotiated pgward down to 3.0`, async () => {
      await using cluster = await PgCluster.start({ version });
      await using proxy = await proxyFor(cluster);
      const { client, processId, secret } = await rawLogin(proxy.port, 2);
      await using _client = client;
      assert.equal(secret.length, 32);
      assert.ok(!client.messages.some((m) => m.type === 'NegotiateProtocolVersion'), 'pgward itself speaks 3.2 to the client');
      assert.deepEqual(backendProtocol(proxy.logs), ['3.0']);
      // A wrong secret of the right length cancels nothing.
      await sendCancel(proxy.port, processId, Buffer.alloc(32, 7));
      client.write(fe.query('select 1').raw);
      await until(() => client.messages.filter((m) => m.type === 'ReadyForQuery').length === 2, 5_000, 'select 1');
      assert.deepEqual(client.errors(), []);
      await cancelSleep(proxy.port, client, processId, secret);
    });
  }

  it('a 3.3 client is negotiated down to 3.2 as PostgreSQL does it (NegotiateProtocolVersion 3 << 16 | 2)', async () => {
    await using cluster = await PgCluster.start({ version: 15 });
    await using proxy = await proxyFor(cluster);
    const { client, secret } = await rawLogin(proxy.port, 3);
    await using _client = client;
    const npv = client.messages.find((m) => m.type === 'NegotiateProtocolVersion');
    assert.ok(npv?.type === 'NegotiateProtocolVersion');
    assert.deepEqual(npv.body(), { newestMinor: 0x30002, unrecognized: [] });
    assert.equal(secret.length, 32);
  });

  it('a pooler that refuses a 3.2 StartupMessage (PgBouncer 1.18: 08P01 bad packet header) is asked again with 3.0', async () => {
    await using cluster = await PgCluster.start({ version: 15 });
    await using bouncer = await startPgBouncer(cluster);
    await using proxy = await startTestProxy(['--insecure', '--auth', 'passthrough', '--backend', `postgres://postgres@127.0.0.1:${bouncer.port}/postgres?sslmode=disable`]);
    const client = new pg.Client({ connectionString: proxy.url('postgres') });
    await client.connect();
    try {
      assert.deepEqual((await client.query('select 1 as ok')).rows, [{ ok: 1 }]);
    } finally {
      await client.end();
    }
    assert.deepEqual(backendProtocol(proxy.logs), ['3.0']);
  });

  it('max_protocol_version=3.0 in the backend URL keeps pgward at 3.0 (PGlite needs it)', async () => {
    await using cluster = await PgCluster.start({ version: 18 });
    await using proxy = await proxyFor(cluster, 'sslmode=disable&max_protocol_version=3.0');
    const { client, processId, secret } = await rawLogin(proxy.port, 0);
    await using _client = client;
    assert.deepEqual(backendProtocol(proxy.logs), ['3.0']);
    await cancelSleep(proxy.port, client, processId, secret);
  });
});
