import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { MessageWants } from '../../src/pipeline/wants.js';
import { be, fe } from '../../src/protocol/index.js';
import { until } from '../helpers/wait.js';
import { type Options, carriedBy, frontendTraffic, trickle } from '../helpers/carrier-harness.js';

for (const kind of ['native', 'js'] as const) describe(`${kind} carrier (real loopback sockets)`, () => {
  const carried = (opts: Options = {}, backend?: { socket: net.Socket; peer: net.Socket }) => carriedBy({ kind, ...opts }, backend);

  it('forwards byte for byte and keeps the state, with every message split at every byte', async () => {
    const t = await carried();
    try {
      const query = fe.query('select 1').raw;
      await trickle(t.client.peer, query);
      await until(() => t.atBackend().length === query.length, 5000, 'the query to arrive');
      assert.deepEqual(t.atBackend(), query);
      assert.equal(t.carrier.status().unanswered, 1);
      const reply = Buffer.concat([be.parameterStatus('application_name', 'näive'), be.commandComplete('SELECT 1'), be.readyForQuery('T')].map((m) => m.raw));
      await trickle(t.backend.peer, reply);
      await until(() => t.atClient().length === reply.length, 5000, 'the reply to arrive');
      assert.deepEqual(t.atClient(), reply);
      const status = t.carrier.status();
      assert.equal(status.transactionStatus, 'T');
      assert.equal(status.unanswered, 0);
      assert.equal(status.bytesToBackend, query.length);
      assert.equal(status.bytesToClient, reply.length);
      assert.deepEqual(t.delivered, [], 'nothing was asked for');
      assert.deepEqual(t.ends, []);
    } finally {
      t.close();
    }
  });

  for (const size of [1, 2, 3, 5, 7, 64]) {
    it(`hands up only the types asked for, in order with the forwarded ones (pieces of ${size} bytes)`, async () => {
      const t = await carried({ wants: new MessageWants().addFrontend(['Query', 'Execute']).addBackend(['ReadyForQuery']) });
      try {
        const traffic = frontendTraffic();
        await trickle(t.client.peer, traffic, size);
        await until(() => t.atBackend().length === traffic.length, 5000, 'everything to arrive');
        assert.deepEqual(t.atBackend(), traffic, 'intact and in order');
        assert.deepEqual(t.delivered, ['client:Execute', 'client:Query']);
        const reply = Buffer.concat([be.parseComplete(), be.bindComplete(), be.dataRow([Buffer.from('7')]), be.commandComplete('SELECT 1'), be.readyForQuery('I')].map((m) => m.raw));
        await trickle(t.backend.peer, reply, size);
        await until(() => t.atClient().length === reply.length, 5000, 'the reply to arrive');
        assert.deepEqual(t.atClient(), reply);
        assert.deepEqual(t.delivered.slice(2), ['backend:ReadyForQuery']);
        assert.equal(t.carrier.status().unanswered, 1, 'the Query is still unanswered');
      } finally {
        t.close();
      }
    });
  }

  it('frames the same traffic split at every point, two reads each time, without losing its place', async () => {
    const t = await carried({ wants: new MessageWants().addFrontend(['Bind', 'Sync']) });
    try {
      const traffic = frontendTraffic();
      for (let k = 1; k < traffic.length; k++) {
        t.client.peer.write(traffic.subarray(0, k));
        await new Promise((r) => setTimeout(r, 2));
        t.client.peer.write(traffic.subarray(k));
        await until(() => t.atBackend().length === traffic.length * k, 5000, `the traffic split at ${k}`);
      }
      const rounds = traffic.length - 1;
      assert.deepEqual(t.atBackend(), Buffer.concat(Array.from({ length: rounds }, () => traffic)), 'intact and in order');
      assert.equal(t.delivered.length, rounds * 2);
      assert.ok(t.delivered.every((d, i) => d === (i % 2 === 0 ? 'client:Bind' : 'client:Sync')));
      assert.equal(t.carrier.status().unanswered, rounds * 2, 'a Sync and a Query each time');
    } finally {
      t.close();
    }
  });

  it('carries what login read ahead first: whole frames, a frame begun, then what the socket brings', async () => {
    const big = fe.query('y'.repeat(200 * 1024)).raw;
    const sync = fe.sync().raw;
    const t = await carried({
      wants: new MessageWants().addFrontend(['Query']),
      leftover: [fe.query('select 1').raw, big],
      partial: sync.subarray(0, 3),
    });
    try {
      t.client.peer.write(sync.subarray(3));
      const expected = Buffer.concat([fe.query('select 1').raw, big, sync]);
      await until(() => t.atBackend().length === expected.length, 5000, 'everything');
      assert.deepEqual(t.atBackend(), expected);
      assert.deepEqual(t.delivered, ['client:Query', 'client:Query']);
      assert.equal(t.carrier.status().unanswered, 3);
    } finally {
      t.close();
    }
  });

  it('hands up a message that spans many reads whole, and one that a middleware changes takes its place', async () => {
    const big = 'x'.repeat(300 * 1024);
    const t = await carried({
      wants: new MessageWants().addFrontend(['Query']),
      onClient: (m, carrier) => carrier.toBackend(m.type === 'Query' && m.body().sql === 'swap me' ? fe.query('swapped') : m),
    });
    try {
      const input = Buffer.concat([fe.query(big).raw, fe.sync().raw, fe.query('swap me').raw, fe.flush().raw]);
      t.client.peer.write(input);
      const expected = Buffer.concat([fe.query(big).raw, fe.sync().raw, fe.query('swapped').raw, fe.flush().raw]);
      await until(() => t.atBackend().length === expected.length, 5000, 'everything to arrive');
      assert.deepEqual(t.atBackend(), expected);
      assert.deepEqual(t.delivered, ['client:Query', 'client:Query']);
    } finally {
      t.close();
    }
  });

  if (kind === 'native')
  it('writes a message from JavaScript after the forwarded message in flight, never inside it', async () => {
    const t = await carried();
    try {
      const row = be.dataRow([Buffer.from('y'.repeat(1000))]).raw;
      t.backend.peer.write(row.subarray(0, 300));
      await until(() => t.atClient().length === 300, 5000, 'part of the row');
      const notice = be.noticeResponse({ severity: 'NOTICE', code: '00000', message: 'in between' });
      t.carrier.toClient(notice);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(t.atClient().length, 300, 'the notice waits for the row to end');
      t.backend.peer.write(Buffer.concat([row.subarray(300), be.readyForQuery('I').raw]));
      const expected = Buffer.concat([row, notice.raw, be.readyForQuery('I').raw]);
      await until(() => t.atClient().length === expected.length, 5000, 'the rest');
      assert.deepEqual(t.atClient(), expected);
    } finally {
      t.close();
    }
  });
});
