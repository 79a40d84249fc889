import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { connectBackend, type BackendConnection } from '../../src/backend/login.js';
import { canLookAtIdle, lookAtIdle } from '../../src/backend/liveness.js';
import { BackendPool, type Lease, type PoolOptions } from '../../src/backend/pool.js';
import { DEFAULT_POOL_SETTINGS } from '../../src/backend/pool-settings.js';
import { parseBackendUrl, type BackendTarget } from '../../src/backend/url.js';
import { connectWithOwnReadBuffer } from '../../src/transport/own-read.js';
import { NativeTlsSocket } from '../../src/transport/native-tls-socket.js';
import { useNativePlainBackends } from '../../src/backend/pooled-endpoint.js';
import { exchange, query } from '../../src/backend/exchange.js';
import { listening, connected } from '../helpers/loopback.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { psqlPath } from '../helpers/psql.js';
import { until } from '../helpers/wait.js';

// What the pool asks an idle connection before handing it out (SPEC §8): its liveness (one that died
// while idle is never handed out) by a look at its socket when it was used moments ago, else a
// Sync round trip (also when the native addon cannot look); its parameters, left set by the reset
// for a session that wants the same, else the reset again and set_config.

const native = canLookAtIdle() ? {} : { skip: 'the native addon is not built' };

describe('a look at an idle socket (native peekIdle)', native, () => {
  async function idlePair() {
    const { server, port } = await listening();
    const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
    // Paused, as an idle pooled connection's bytes sit unread until the loop turns.
    const idle = connectWithOwnReadBuffer({ host: '127.0.0.1', port });
    const peer = await accepted;
    await connected(idle);
    return { idle, peer, close: () => (idle.destroy(), peer.destroy(), server.close()) };
  }

  it('finds an open, quiet socket quiet, and consumes nothing', async () => {
    const { idle, peer, close } = await idlePair();
    try {
      assert.equal(lookAtIdle(idle), 'quiet');
      peer.write('x');
      await until(() => lookAtIdle(idle) === 'gone', 2000, 'the byte to arrive');
      // Still there for whoever reads next.
      const chunk = await new Promise<Buffer>((r) => idle.once('data', r).resume());
      assert.equal(chunk.toString(), 'x');
    } finally {
      close();
    }
  });

  it("finds a socket its peer closed gone, before anyone read the close", async () => {
    const { idle, peer, close } = await idlePair();
    try {
      peer.end();
      await until(() => lookAtIdle(idle) === 'gone', 2000, 'the FIN to arrive');
      assert.equal(idle.readableEnded, false, 'the close was seen by the look, not by a read');
    } finally {
      close();
    }
  });

  it('cannot look at a stream without a descriptor of its own', () => {
    assert.equal(lookAtIdle(new PassThrough()), undefined);
  });
});

describe('vouching for a reused pooled connection', () => {
  let cluster: PgCluster;
  let target: BackendTarget;
  let psql: string;

  before(async () => {
    cluster = await PgCluster.start();
    target = parseBackendUrl(cluster.url('postgres', undefined, 'postgres') + '?sslmode=disable');
    psql = await psqlPath();
  });

  after(async () => {
    await cluster?.stop();
  });

  /** A pool whose connections count the messages written to them; the reset and the sessions' own traffic included. */
  function countingPool(opts: Partial<PoolOptions> = {}) {
    const written: BackendConnection[] = [];
    const writes = new Map<BackendConnection, string[]>();
    const closed: string[] = [];
    const pool = new BackendPool({
      settings: DEFAULT_POOL_SETTINGS,
      events: { closed: (_t, why) => closed.push(why) },
      async connect(t, o) {
        const connection = await connectBackend(t, o);
        const types: string[] = [];
        writes.set(connection, types);
        written.push(connection);
        const write = connection.socket.write.bind(connection.socket) as (chunk: Buffer) => boolean;
        connection.socket.write = ((chunk: Buffer) => {
          for (let at = 0; at < chunk.length; at += 1 + chunk.readInt32BE(at + 1)) types.push(String.fromCharCode(chunk[at]!));
          return write(chunk);
        }) as typeof connection.socket.write;
        return connection;
      },
      ...opts,
    });
    const acquire = (apply = new Map<string, string>()) => pool.acquire(target, { params: new Map([['user', 'postgres'], ['database', 'postgres']]), apply });
    /** Gives `lease` back and waits until its reset is done and it is idle. */
    const giveBack = async (lease: Lease) => {
      lease.release(true);
      await until(() => pool.stats()[0]?.idle === 1, 5000, 'the connection to be idle again');
    };
    return { pool, acquire, giveBack, writes, closed };
  }

  async function pidOf(lease: Lease): Promise<number> {
    return lease.connection.key!.processId;
  }

  it('hands a connection used moments ago out without a round trip', native, async () => {
    const { pool, acquire, giveBack, writes } = countingPool();
    try {
      const first = await acquire();
      await giveBack(first);
      const sent = [...writes.get(first.connection)!];
      assert.deepEqual(sent, ['Q'], 'the reset only');
      const second = await acquire();
      assert.equal(second.connection, first.connection);
      assert.equal(second.fresh, false);
      assert.deepEqual(writes.get(second.connection), sent, 'no Sync before the hand-out');
      second.release(false);
    } finally {
      pool.close();
    }
  });

  for (const [name, opts] of [
    ['the addon cannot look at it', { lookAtIdle: () => undefined }],
    ['it was idle longer than the check delay', { checkAfterMs: 0 }],
  ] as const) {
    it(`asks a reused connection with a Sync when ${name}`, async () => {
      const { pool, acquire, giveBack, writes } = countingPool(opts);
      try {
        const first = await acquire();
        await giveBack(first);
        const second = await acquire();
        assert.equal(second.connection, first.connection);
        assert.deepEqual(writes.get(second.connection), ['Q', 'S'], 'the reset, then a Sync');
        second.release(false);
      } finally {
        pool.close();
      }
    });
  }

  for (const [name, opts, why] of [
    ['a look at its socket', {}, 'closed by the backend while idle'],
    ['a Sync (no addon)', { lookAtIdle: () => undefined }, 'lost while idle'],
  ] as const) {
    it(`never hands out a connection terminated while idle, found by ${name} before the pool read the backend's FATAL`, async (t) => {
      if (!opts.lookAtIdle && !canLookAtIdle()) return t.skip('the native addon is not built');
      const { pool, acquire, giveBack, closed } = countingPool(opts);
      try {
        const first = await acquire();
        const pid = await pidOf(first);
        await giveBack(first);
        // Synchronously, waiting for the backend to exit: the event loop stands still meanwhile, so
        // the pool's watch has not read the FATAL and EOF sitting on the socket when it hands out.
        const kill = spawnSync(psql, ['-X', '-At', '-h', cluster.socketDir, '-p', String(cluster.port), '-U', 'postgres', '-d', 'postgres', '-c', `select pg_terminate_backend(${pid}, 5000)`], { encoding: 'utf8' });
        assert.equal(kill.stdout.trim(), 't', kill.stderr);
        const next = await acquire();
        assert.equal(next.fresh, true, 'a new connection');
        assert.notEqual(await pidOf(next), pid);
        assert.deepEqual(closed, [why]);
        next.release(false);
      } finally {
        pool.close();
      }
    });
  }

  it("keeps a session's parameters set across its reset, for the next session that wants the same; another gets the reset again", native, async () => {
    const { pool, acquire, giveBack, writes } = countingPool();
    const app = (name: string) => new Map([['application_name', name]]);
    try {
      const first = await acquire(app('churn'));
      const sent = writes.get(first.connection)!;
      assert.deepEqual(sent, ['Q'], 'set_config on the new connection');
      await giveBack(first);
      assert.deepEqual(sent, ['Q', 'Q', 'Q'], 'the reset, then set_config of the same again');
      assert.equal(first.connection.parameters.get('application_name'), 'churn');

      const second = await acquire(app('churn'));
      assert.equal(second.connection, first.connection);
      assert.equal(sent.length, 3, 'handed out without a round trip');
      await giveBack(second);

      const third = await acquire();
      assert.equal(third.connection, first.connection);
      assert.deepEqual(sent.slice(5), ['Q'], 'the reset again, before a session that set nothing');
      assert.equal(third.connection.parameters.get('application_name'), '', "the earlier session's application_name is gone");
      await giveBack(third);
      assert.deepEqual(sent.slice(6), ['Q'], 'a reset alone: the session applied nothing');

      const fourth = await acquire(app('other'));
      assert.deepEqual(sent.slice(7), ['Q'], 'set_config only: the reset left nothing of an earlier session');
      assert.equal(fourth.connection.parameters.get('application_name'), 'other');
      fourth.release(false);
    } finally {
      pool.close();
    }
  });

  it('refuses a parameter the backend refuses after the reset again, and keeps the connection clean', native, async () => {
    const { pool, acquire, giveBack, writes } = countingPool();
    try {
      const first = await acquire(new Map([['application_name', 'before']]));
      await giveBack(first);
      await assert.rejects(acquire(new Map([['TimeZone', 'Not/AZone']])), (e: { sqlstate?: string }) => e.sqlstate === '22023');
      const next = await acquire();
      assert.equal(next.connection, first.connection, 'kept');
      assert.equal(next.connection.parameters.get('application_name'), '');
      assert.deepEqual(writes.get(next.connection)!.slice(-2), ['Q', 'Q'], 'the reset again, and the refused set_config; nothing since');
      next.release(false);
    } finally {
      pool.close();
    }
  });

  describe('a kept plain connection on a native endpoint (the pool with the native carrier)', native, () => {
    before(() => useNativePlainBackends(true));
    after(() => useNativePlainBackends(false));

    const request = { params: new Map([['user', 'postgres'], ['database', 'postgres']]), apply: new Map<string, string>() };

    it('moves onto one when first kept, and is handed out again on it without a round trip', async () => {
      const pool = new BackendPool({ settings: DEFAULT_POOL_SETTINGS });
      try {
        const first = await pool.acquire(target, request);
        assert.ok(!(first.connection.socket instanceof NativeTlsSocket), "a new connection is Node's socket for its first session");
        first.release(true);
        await until(() => pool.stats()[0]?.idle === 1, 5000, 'the connection to be idle again');
        const { socket } = first.connection;
        assert.ok(socket instanceof NativeTlsSocket && !socket.encrypted, 'kept on a plain native endpoint');
        const second = await pool.acquire(target, request);
        assert.equal(second.connection, first.connection);
        assert.equal(second.connection.socket, socket);
        const answer = await exchange(second.connection, [query('select 41 + 1')], 1, 5000);
        assert.equal(answer.status, 'I');
        second.release(true);
        await until(() => pool.stats()[0]?.idle === 1, 5000, 'the connection to be idle again');
        assert.equal(first.connection.socket, socket, 'moved once, not per session');
      } finally {
        pool.close();
      }
    });

    it('never hands out one terminated while idle: the look at its descriptor finds it gone', async () => {
      const closed: string[] = [];
      const pool = new BackendPool({ settings: DEFAULT_POOL_SETTINGS, events: { closed: (_t, why) => closed.push(why) } });
      try {
        const first = await pool.acquire(target, request);
        const pid = first.connection.key!.processId;
        first.release(true);
        await until(() => pool.stats()[0]?.idle === 1, 5000, 'the connection to be idle again');
        const kill = spawnSync(psql, ['-X', '-At', '-h', cluster.socketDir, '-p', String(cluster.port), '-U', 'postgres', '-d', 'postgres', '-c', `select pg_terminate_backend(${pid}, 5000)`], { encoding: 'utf8' });
        assert.equal(kill.stdout.trim(), 't', kill.stderr);
        const next = await pool.acquire(target, request);
        assert.equal(next.fresh, true, 'a new connection');
        assert.notEqual(next.connection.key!.processId, pid);
        assert.deepEqual(closed, ['closed by the backend while idle']);
        next.release(false);
      } finally {
        pool.close();
      }
    });
  });
});
