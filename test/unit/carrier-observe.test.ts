import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MessageWants } from '../../src/pipeline/wants.js';
import { be, fe, Framer } from '../../src/protocol/index.js';
import { until } from '../helpers/wait.js';
import { carriedBy, frontendTraffic, trickle } from '../helpers/carrier-harness.js';

// Observed types (MessageInterest.observeOnly): forwarded by the carrier as if nobody wanted them,
// and shown to the pipeline afterwards, in the order read; whole even when they came in pieces.
for (const kind of ['native', 'js'] as const) describe(`${kind} carrier: observed types`, () => {
  for (const size of [1, 3, 7, 64]) {
    it(`forwards observed messages itself and shows each once, in order with held ones (pieces of ${size} bytes)`, async () => {
      // Query and ReadyForQuery only observed; Execute held (the harness writes it on).
      const wants = new MessageWants().addFrontend(['Query'], true).addFrontend(['Execute']).addBackend(['ReadyForQuery', 'DataRow'], true);
      const seen: string[] = [];
      const t = await carriedBy({
        kind,
        wants,
        onObservedClient: (m) => seen.push(m.type === 'Query' ? m.body().sql : m.type),
        onObservedBackend: (m) => seen.push(m.type === 'DataRow' ? `row ${m.body().values[0]}` : m.type),
      });
      try {
        const traffic = frontendTraffic();
        await trickle(t.client.peer, traffic, size);
        await until(() => t.atBackend().length === traffic.length, 5000, 'everything to arrive');
        assert.deepEqual(t.atBackend(), traffic, 'intact, in order, nothing twice');
        await until(() => t.delivered.length === 2, 5000, 'the observed Query to be shown');
        assert.deepEqual(t.delivered, ['client:Execute', 'client-observed:Query']);
        const reply = Buffer.concat([be.dataRow([Buffer.from('7')]), be.dataRow([Buffer.from('x'.repeat(300))]), be.commandComplete('SELECT 2'), be.readyForQuery('I')].map((m) => m.raw));
        await trickle(t.backend.peer, reply, size);
        await until(() => t.atClient().length === reply.length, 5000, 'the reply to arrive');
        assert.deepEqual(t.atClient(), reply);
        await until(() => seen.length === 4, 5000, 'the observed replies to be shown');
        assert.deepEqual(seen, ['select 1', 'row 7', `row ${'x'.repeat(300)}`, 'ReadyForQuery']);
        assert.equal(t.carrier.status().transactionStatus, 'I');
      } finally {
        t.close();
      }
    });
  }

  it('does not wait for the pipeline to forward an observed message', async () => {
    // Nothing is written back for observed messages: the bytes arrive although the handler writes nothing.
    const t = await carriedBy({ kind, wants: new MessageWants().addFrontend(['Query'], true), onObservedClient: () => {} });
    try {
      const query = fe.query('select 1').raw;
      t.client.peer.write(query);
      await until(() => t.atBackend().length === query.length, 5000, 'the query to arrive');
      assert.deepEqual(t.atBackend(), query);
      assert.equal(t.carrier.status().unanswered, 1);
    } finally {
      t.close();
    }
  });

  it('forwards a counted type itself and hands over only its count, in order with what it shows', async () => {
    const wants = new MessageWants().addBackend(['ReadyForQuery'], true).countBackend(['DataRow']);
    const t = await carriedBy({ kind, wants });
    try {
      const reply = Buffer.concat([be.dataRow([Buffer.from('1')]), be.dataRow([Buffer.from('2')]), be.commandComplete('SHOW'), be.readyForQuery('I')].map((m) => m.raw));
      t.backend.peer.write(reply);
      await until(() => t.atClient().length === reply.length, 5000, 'the reply to arrive');
      assert.deepEqual(t.atClient(), reply, 'intact, in order');
      await until(() => t.delivered.length === 3, 5000, 'the counts and the observed ReadyForQuery');
      assert.deepEqual(t.delivered, ['backend-counted:D', 'backend-counted:D', 'backend-observed:ReadyForQuery']);
    } finally {
      t.close();
    }
  });

  it('forwards a run of counted messages read with a held one itself, in order (a held batch)', async () => {
    // ReadyForQuery held (the harness writes it on): the rows before it go on from the batch, counted at once.
    const wants = new MessageWants().addBackend(['ReadyForQuery']).countBackend(['DataRow']);
    const t = await carriedBy({ kind, wants });
    try {
      const reply = Buffer.concat([...[1, 2, 3].map((i) => be.dataRow([Buffer.from(String(i))])), be.commandComplete('SELECT 3'), be.readyForQuery('I')].map((m) => m.raw));
      t.backend.peer.write(reply);
      await until(() => t.atClient().length === reply.length, 5000, 'the reply to arrive');
      assert.deepEqual(t.atClient(), reply, 'intact, in order');
      assert.deepEqual(t.delivered, [...Array<string>(3).fill('backend-counted:D'), 'backend:ReadyForQuery']);
    } finally {
      t.close();
    }
  });

  it('a stop while an observed message is shown still shows every observed message it forwarded', async () => {
    // Three Queries in one read: the carrier is stopped while the first is shown.
    const t = await carriedBy({ kind, wants: new MessageWants().addFrontend(['Query'], true), onObservedClient: (_m, carrier) => carrier.stop() });
    try {
      const queries = ['select 1', 'select 2', 'select 3'].map((sql) => fe.query(sql));
      t.client.peer.write(Buffer.concat(queries.map((q) => q.raw)));
      await until(() => t.ends.length === 1, 5000, 'the end');
      await new Promise((r) => setTimeout(r, 50));
      const forwarded = new Framer();
      let queriesForwarded = 0;
      forwarded.push(t.atBackend(), () => void queriesForwarded++);
      assert.ok(queriesForwarded >= 1);
      assert.deepEqual(t.delivered, Array<string>(queriesForwarded).fill('client-observed:Query'), 'each Query forwarded was shown, before the end');
    } finally {
      t.close();
    }
  });

  it('shows what it observed before it tells of its end', async () => {
    const t = await carriedBy({ kind, wants: new MessageWants().addFrontend(['Query'], true) });
    try {
      t.client.peer.end(fe.query('select 1').raw);
      await until(() => t.ends.length === 1, 5000, 'the end');
      assert.deepEqual(t.delivered, ['client-observed:Query'], 'the observed Query came first');
      assert.equal(t.ends[0]!.reason, 'client-eof');
    } finally {
      t.close();
    }
  });
});

describe('native carrier: observed types at an end from JavaScript', () => {
  it('shows an observed message waiting in C before a Terminate written from JavaScript releases the backend', async () => {
    const wants = new MessageWants().addBackend(['ReadyForQuery'], true);
    const t = await carriedBy({ kind: 'native', wants, keepBackend: true });
    try {
      // The observed ReadyForQuery reaches the client at once and waits in C for its hand-over;
      // the Terminate is written as soon as the client has it.
      t.client.peer.once('data', () => t.carrier.toBackend(fe.terminate()));
      t.backend.peer.write(be.readyForQuery('I').raw);
      await until(() => t.ends.length === 1, 5000, 'the carrier to end');
      assert.equal(t.ends[0]!.reason, 'released');
      assert.deepEqual(t.delivered, ['backend-observed:ReadyForQuery'], 'shown before the end');
    } finally {
      t.close();
    }
  });
});
