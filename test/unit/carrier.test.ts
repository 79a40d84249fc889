import assert from 'node:assert/strict';
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import { describe, it } from 'node:test';
import type { Carrier, CarrierEnd, CarrierOptions } from '../../src/pipeline/carrier.js';
import { JsCarrier } from '../../src/pipeline/js-carrier.js';
import { liveNativeCarriers, NativeCarrier } from '../../src/pipeline/native-carrier.js';
import { connectWithOwnReadBuffer } from '../../src/transport/own-read.js';
import { MessageWants } from '../../src/pipeline/wants.js';
import { be, fe, Framer, type BackendMessage, type FrontendMessage } from '../../src/protocol/index.js';
import { until } from '../helpers/wait.js';

interface Options {
  kind?: 'native' | 'js';
  wants?: MessageWants;
  maxMessageSize?: number;
  keepBackend?: boolean;
  /** Frames the login read ahead from the client, and bytes of a frame begun (fed to the client's framer). */
  leftover?: Buffer[];
  partial?: Buffer;
  /** What to do with a message handed up (default: write it on, as an empty pipeline would). */
  onClient?: (m: FrontendMessage, carrier: Carrier) => void;
  onBackend?: (m: BackendMessage, carrier: Carrier) => void;
}

async function listening(): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as net.AddressInfo).port };
}

/** A plain TCP socket as the proxy holds one (reading into regions of its own), and its far end. */
async function connection(server: net.Server, port: number): Promise<{ socket: net.Socket; peer: net.Socket }> {
  const peer = new Promise<net.Socket>((r) => server.once('connection', r));
  const socket = connectWithOwnReadBuffer({ host: '127.0.0.1', port });
  await new Promise((r) => socket.once('connect', r));
  return { socket, peer: await peer };
}

/**
 * A carrier (native by default) between two real loopback connections: `client.peer` and
 * `backend.peer` are the far ends a test writes and reads.
 */
async function carriedBy(opts: Options, existingBackend?: { socket: net.Socket; peer: net.Socket }) {
  const { server, port } = await listening();
  const c = await connection(server, port);
  const b = existingBackend ?? (await connection(server, port));
  const atBackend: Buffer[] = [];
  const atClient: Buffer[] = [];
  const onBackendData = (d: Buffer) => atBackend.push(d);
  const onClientData = (d: Buffer) => atClient.push(d);
  b.peer.on('data', onBackendData);
  c.peer.on('data', onClientData);
  const delivered: string[] = [];
  const ends: CarrierEnd[] = [];
  let idles = 0;
  let carrier: Carrier;
  const options: CarrierOptions = {
    wants: opts.wants ?? new MessageWants(),
    maxMessageSize: opts.maxMessageSize ?? 64 * 1024 * 1024,
    keepBackend: opts.keepBackend,
    events: {
      fromClient: (m) => {
        delivered.push(`client:${m.type}`);
        if (opts.onClient) opts.onClient(m, carrier);
        else carrier.toBackend(m);
      },
      fromBackend: (m) => {
        delivered.push(`backend:${m.type}`);
        if (opts.onBackend) opts.onBackend(m, carrier);
        else carrier.toClient(m);
      },
      idle: () => idles++,
      ended: (e) => ends.push(e),
    },
  };
  const clientFramer = new Framer();
  if (opts.partial) clientFramer.push(opts.partial, () => assert.fail('a part of a frame only'));
  const leftover = (opts.leftover ?? []).map((raw) => ({ code: raw[0]!, raw }));
  const endpoints = [{ socket: c.socket, framer: clientFramer, leftover }, { socket: b.socket, framer: new Framer() }] as const;
  if (opts.kind === 'js') carrier = new JsCarrier(...endpoints, options);
  else {
    const native = NativeCarrier.open(...endpoints, options);
    assert.ok(native, 'the native carrier takes plain TCP sockets');
    carrier = native;
  }
  carrier.start();
  return {
    carrier,
    client: c,
    backend: b,
    atBackend: () => Buffer.concat(atBackend),
    atClient: () => Buffer.concat(atClient),
    delivered,
    ends,
    idles: () => idles,
    close: () => {
      for (const s of [c.socket, c.peer]) s.destroy();
      if (!existingBackend) for (const s of [b.socket, b.peer]) s.destroy();
      b.peer.off('data', onBackendData);
      server.close();
    },
  };
}

/** Writes `bytes` in pieces of `size` (1: a byte per TCP segment), waiting a moment between pieces. */
async function trickle(socket: net.Socket, bytes: Buffer, size = 1): Promise<void> {
  for (let i = 0; i < bytes.length; i += size) {
    socket.write(bytes.subarray(i, i + size));
    await new Promise((r) => setTimeout(r, 2));
  }
}

const frontendTraffic = () =>
  Buffer.concat(
    [
      fe.parse({ name: 's1', sql: 'select $1::int', paramTypes: [23] }),
      fe.bind({ portal: '', statement: 's1', paramFormats: [], params: [Buffer.from('7')], resultFormats: [] }),
      fe.execute('', 0),
      fe.sync(),
      fe.query('select 1'),
    ].map((m) => m.raw),
  );

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
