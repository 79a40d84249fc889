import assert from 'node:assert/strict';
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import { describe, it } from 'node:test';
import { liveNativeCarriers } from '../../src/pipeline/native-carrier.js';
import { MessageWants } from '../../src/pipeline/wants.js';
import { be, fe } from '../../src/protocol/index.js';
import { until } from '../helpers/wait.js';
import { type Options, carriedBy, trickle } from '../helpers/carrier-harness.js';

for (const kind of ['native', 'js'] as const) describe(`${kind} carrier: stopping, limits, ends and the pool (real loopback sockets)`, () => {
  const carried = (opts: Options = {}, backend?: { socket: net.Socket; peer: net.Socket }) => carriedBy({ kind, ...opts }, backend);

  if (kind === 'native')
  it('stops only at a message boundary, and reads nothing past it', async () => {
    const t = await carried();
    try {
      const row = be.dataRow([Buffer.from('x'.repeat(100))]).raw;
      const next = be.readyForQuery('I').raw;
      t.backend.peer.write(row.subarray(0, 50));
      await until(() => t.atClient().length === 50, 5000, 'half the row to arrive');
      t.carrier.stop();
      assert.equal(t.ends.length, 0, 'not at a boundary: it cannot stop at once');
      // The rest of the row and the next message in one segment: the carrier takes only the row.
      t.backend.peer.write(Buffer.concat([row.subarray(50), next]));
      await until(() => t.ends.length === 1, 5000, 'the carrier to stop');
      assert.equal(t.ends[0]!.reason, 'stopped');
      assert.deepEqual(t.atClient(), row);
      // What it left is still in the socket, for Node to read.
      const left = new Promise<Buffer>((r) => t.backend.socket.once('data', r));
      t.backend.socket.resume();
      assert.deepEqual(await left, next);
      assert.equal(t.ends[0]!.status.clientMidMessage, false);
    } finally {
      t.close();
    }
  });

  it('stops reading a paused side until it is resumed', async () => {
    const t = await carried();
    try {
      t.carrier.pause('client');
      await new Promise((r) => setTimeout(r, 20));
      const query = fe.query('select 1').raw;
      t.client.peer.write(query);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(t.atBackend().length, 0, 'nothing read while paused');
      t.carrier.resume('client');
      await until(() => t.atBackend().length === query.length, 5000, 'the query after resume');
    } finally {
      t.close();
    }
  });

  if (kind === 'js')
    it('writes a message from JavaScript whole, between messages (a message read in part is not yet forwarded)', async () => {
      const t = await carried();
      try {
        const row = be.dataRow([Buffer.from('y'.repeat(1000))]).raw;
        t.backend.peer.write(row.subarray(0, 300));
        await new Promise((r) => setTimeout(r, 50));
        const notice = be.noticeResponse({ severity: 'NOTICE', code: '00000', message: 'in between' });
        t.carrier.toClient(notice);
        t.backend.peer.write(Buffer.concat([row.subarray(300), be.readyForQuery('I').raw]));
        const expected = Buffer.concat([notice.raw, row, be.readyForQuery('I').raw]);
        await until(() => t.atClient().length === expected.length, 5000, 'everything');
        assert.deepEqual(t.atClient(), expected);
      } finally {
        t.close();
      }
    });

  it('stops at once when both directions are at a boundary', async () => {
    const t = await carried();
    try {
      t.carrier.stop();
      assert.equal(t.ends.length, 1);
      assert.equal(t.ends[0]!.reason, 'stopped');
      t.carrier.stop();
      assert.equal(t.ends.length, 1, 'stopping twice does nothing');
    } finally {
      t.close();
    }
  });

  for (const [how, leftover] of [
    ['read together', false],
    ['read by the login before the carrier started', true],
  ] as const) {
    it(`aborts at once from inside a message it delivered (two Queries ${how}): nothing after it is handed up or forwarded`, async () => {
      const queries = [fe.query('select 1').raw, fe.query('select 2').raw];
      const t = await carried({
        wants: new MessageWants().addFrontend(['Query']),
        leftover: leftover ? queries : undefined,
        onClient: (m, carrier) => {
          carrier.toBackend(m);
          carrier.abort();
        },
      });
      try {
        // In one segment, so both are read, and handed up, together.
        if (!leftover) t.client.peer.write(Buffer.concat(queries));
        await until(() => t.ends.length === 1, 5000, 'the carrier to end');
        assert.equal(t.ends[0]!.reason, 'stopped');
        assert.deepEqual(t.delivered, ['client:Query'], 'the second Query is not handed up');
        await new Promise((r) => setTimeout(r, 50));
        // The first may have gone on (written before the abort, which drops what is unsent), never the second.
        assert.ok([0, queries[0]!.length].includes(t.atBackend().length), `${t.atBackend().length} bytes reached the backend`);
        t.carrier.abort();
        assert.equal(t.ends.length, 1, 'aborting again does nothing');
      } finally {
        t.close();
      }
    });
  }

  for (const [what, bytes, message] of [
    ['an impossible length', Buffer.from([0x51, 0, 0, 0, 2]), /invalid message length 2 .*"Q"/],
    ['a Sync longer than PostgreSQL takes one', Buffer.concat([Buffer.from([0x53, 0, 0, 0x4e, 0x24]), Buffer.alloc(20000)]), /invalid message length 20004 .*"S"/],
  ] as const) {
    it(`ends on ${what} from the client with 08P01, forwarding nothing of it`, async () => {
      const t = await carried();
      try {
        t.client.peer.write(bytes);
        await until(() => t.ends.length === 1, 5000, 'the carrier to end');
        assert.equal(t.ends[0]!.reason, 'client-violation');
        assert.equal(t.ends[0]!.error?.sqlstate, '08P01');
        assert.match(t.ends[0]!.error!.message, message);
        assert.equal(t.atBackend().length, 0);
      } finally {
        t.close();
      }
    });
  }

  it('refuses to hold a message for JavaScript over the size limit (54000), but forwards as long a message nobody reads', async () => {
    const t = await carried({ wants: new MessageWants().addBackend(['RowDescription']), maxMessageSize: 1000 });
    try {
      const row = be.dataRow([Buffer.alloc(5000)]).raw;
      t.backend.peer.write(row);
      await until(() => t.atClient().length === row.length, 5000, 'the long row, forwarded');
      t.backend.peer.write(be.rowDescription([{ name: 'x'.repeat(2000), tableOid: 0, columnAttr: 0, typeOid: 25, typeSize: -1, typeModifier: -1, format: 0 }]).raw);
      await until(() => t.ends.length === 1, 5000, 'the carrier to end');
      assert.equal(t.ends[0]!.reason, 'backend-violation');
      assert.equal(t.ends[0]!.error?.sqlstate, '54000');
    } finally {
      t.close();
    }
  });

  it("reports the backend's EOF and whether its last word was FATAL", async () => {
    const t = await carried();
    try {
      t.backend.peer.end(be.errorResponse({ severity: 'FATAL', severityV: 'FATAL', code: '57P01', message: 'terminating connection due to administrator command' }).raw);
      await until(() => t.ends.length === 1, 5000, 'the carrier to end');
      assert.equal(t.ends[0]!.reason, 'backend-eof');
      assert.equal(t.ends[0]!.status.backendSaidFatal, true);
    } finally {
      t.close();
    }
  });

  it("reports a backend's reset as a backend error that names the reset", async () => {
    const t = await carried();
    try {
      // Bytes the backend never reads make its close a reset (RST), as a killed host's would be.
      t.client.peer.write(fe.query('select 1').raw);
      await until(() => t.atBackend().length > 0, 5000, 'the query at the backend');
      t.backend.peer.resetAndDestroy();
      await until(() => t.ends.length === 1, 5000, 'the carrier to end');
      assert.equal(t.ends[0]!.reason, 'backend-error');
      // libuv reports a socket error seen by polling as EBADF; the cause is the socket's own error.
      assert.match(String(t.ends[0]!.cause), /ECONNRESET/);
    } finally {
      t.close();
    }
  });

  it("reports the client's EOF after Terminate, which went on to the backend", async () => {
    const t = await carried();
    try {
      t.client.peer.end(fe.terminate().raw);
      await until(() => t.ends.length === 1, 5000, 'the carrier to end');
      assert.equal(t.ends[0]!.reason, 'client-eof');
      assert.equal(t.ends[0]!.status.terminated, true);
      assert.deepEqual(t.atBackend(), fe.terminate().raw);
    } finally {
      t.close();
    }
  });

  it('gives an idle backend back on Terminate, without it, and a new carrier runs on the same backend socket', async () => {
    const first = await carried({ keepBackend: true });
    const query = fe.query('select 1').raw;
    first.client.peer.write(query);
    await until(() => first.atBackend().length === query.length, 5000, 'the query');
    first.backend.peer.write(Buffer.concat([be.commandComplete('SELECT 1').raw, be.readyForQuery('I').raw]));
    await until(() => first.carrier.status().unanswered === 0, 5000, 'the answer');
    first.client.peer.write(fe.terminate().raw);
    await until(() => first.ends.length === 1, 5000, 'the carrier to end');
    assert.equal(first.ends[0]!.reason, 'released');
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(first.atBackend(), query, 'the backend never saw the Terminate');
    first.carrier.close({ keepBackend: true });
    const backend = first.carrier.takeBackend();
    assert.equal(backend.socket, first.backend.socket);
    const second = await carried({}, first.backend);
    try {
      second.client.peer.write(fe.query('select 2').raw);
      await until(() => first.atBackend().length === query.length * 2, 5000, 'the next session reaches the same backend');
      second.backend.peer.write(be.readyForQuery('I').raw);
      await until(() => second.atClient().length === 6, 5000, 'its answer');
    } finally {
      second.close();
      first.close();
      for (const s of [first.backend.socket, first.backend.peer]) s.destroy();
    }
  });

  it('keeps every byte of a Terminate split across reads from a reusable backend', async () => {
    const t = await carried({ keepBackend: true });
    try {
      await trickle(t.client.peer, fe.terminate().raw);
      await until(() => t.ends.length === 1, 5000, 'the carrier to end');
      assert.equal(t.ends[0]!.reason, 'released');
      assert.equal(t.ends[0]!.status.terminated, true, 'the client did say Terminate');
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(t.atBackend().length, 0, 'nothing of it reached the backend');
    } finally {
      t.close();
    }
  });

  it('passes the Terminate on while an extended-protocol batch is open (Parse with no Sync yet)', async () => {
    const t = await carried({ keepBackend: true });
    try {
      const parse = fe.parse({ name: '', sql: 'select 1', paramTypes: [] }).raw;
      t.client.peer.write(Buffer.concat([parse, fe.terminate().raw]));
      await until(() => t.atBackend().length === parse.length + 5, 5000, 'the Parse and the Terminate');
      assert.equal(t.carrier.status().reusable, false);
      assert.equal(t.ends.length, 0);
    } finally {
      t.close();
    }
  });

  it('keeps a busy backend: a Terminate in a transaction goes on to it', async () => {
    const t = await carried({ keepBackend: true });
    try {
      t.client.peer.write(fe.query('begin').raw);
      t.backend.peer.write(be.readyForQuery('T').raw);
      await until(() => t.carrier.status().transactionStatus === 'T', 5000, 'the transaction');
      t.client.peer.write(fe.terminate().raw);
      await until(() => t.atBackend().length === fe.query('begin').raw.length + 5, 5000, 'the Terminate');
      assert.equal(t.carrier.status().terminated, true);
      assert.deepEqual(t.ends, []);
    } finally {
      t.close();
    }
  });

  it('tells when the session becomes idle, once asked', async () => {
    const t = await carried();
    try {
      t.client.peer.write(fe.query('select 1').raw);
      await until(() => t.carrier.status().unanswered === 1, 5000, 'the query');
      t.carrier.watchIdle();
      t.backend.peer.write(be.readyForQuery('I').raw);
      await until(() => t.idles() === 1, 5000, 'the idle event');
    } finally {
      t.close();
    }
  });

  if (kind === 'native')
  it('frees every carrier once it has ended and nothing holds it', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    // The carriers of the cases above, all ended by now, are freed too.
    await until(() => (gc(), liveNativeCarriers() === 0), 5000, 'the earlier carriers to be freed');
    for (let i = 0; i < 20; i++) {
      const t = await carried();
      t.client.peer.end(fe.terminate().raw);
      await until(() => t.ends.length === 1, 5000, 'the carrier to end');
      t.close();
    }
    await until(() => (gc(), liveNativeCarriers() === 0), 5000, 'the ended carriers to be freed');
  });
});
