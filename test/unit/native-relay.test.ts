import assert from 'node:assert/strict';
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import { describe, it } from 'node:test';
import { NativeRelay, type NativeRelayEnd } from '../../src/pipeline/native-relay.js';
import { connectWithOwnReadBuffer } from '../../src/pipeline/own-read.js';
import { be, fe } from '../../src/protocol/index.js';
import { until } from '../helpers/wait.js';

/**
 * The native relay between two real loopback connections: `client`/`backend` are the proxy's
 * sockets it relays between, `clientPeer`/`backendPeer` the far ends a test writes and reads.
 */
async function relayed(limits = { client: 1 << 30, backend: 1 << 30 }, holdTerminate = false) {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const accept = () => new Promise<net.Socket>((r) => server.once('connection', r));
  const connect = async () => {
    const peer = accept();
    const socket = connectWithOwnReadBuffer({ host: '127.0.0.1', port });
    await new Promise((r) => socket.once('connect', r));
    return { socket, peer: await peer };
  };
  const c = await connect();
  const b = await connect();
  const fromClient: Buffer[] = [];
  const fromBackend: Buffer[] = [];
  b.peer.on('data', (d: Buffer) => fromClient.push(d));
  c.peer.on('data', (d: Buffer) => fromBackend.push(d));
  const params: string[] = [];
  const ends: NativeRelayEnd[] = [];
  const relay = NativeRelay.start(c.socket, b.socket, limits, {
    parameterStatus: (body) => params.push(body.toString('latin1')),
    end: (e) => ends.push(e),
    holdTerminate,
  });
  assert.ok(relay, 'the native relay starts on plain TCP sockets');
  return {
    relay,
    client: c.socket,
    backend: b.socket,
    clientPeer: c.peer,
    backendPeer: b.peer,
    /** What reached the backend's peer, and the client's peer. */
    atBackend: () => Buffer.concat(fromClient),
    atClient: () => Buffer.concat(fromBackend),
    params,
    ends,
    close: () => {
      for (const s of [c.socket, c.peer, b.socket, b.peer]) s.destroy();
      server.close();
    },
  };
}

/** Writes `bytes` one at a time, each in a write (and a TCP segment) of its own. */
async function trickle(socket: net.Socket, bytes: Buffer): Promise<void> {
  for (const byte of bytes) {
    socket.write(Buffer.from([byte]));
    await new Promise((r) => setTimeout(r, 2));
  }
}

describe('native relay (real loopback sockets)', () => {
  it("holds a client's Terminate back from the backend, and says when part of it got through", async () => {
    const t = await relayed(undefined, true);
    try {
      const query = fe.query('select 1').raw;
      const terminate = fe.terminate().raw;
      // A Query and the Terminate in one segment: the Query goes on, the Terminate does not.
      t.clientPeer.write(Buffer.concat([query, terminate]));
      await until(() => t.ends.length === 1, 5000, 'the relay to end');
      assert.equal(t.ends[0]!.reason, 'client-terminate');
      assert.equal(t.ends[0]!.terminateSplit, false);
      assert.equal(t.ends[0]!.unsynced, false);
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(t.atBackend(), query, 'nothing of the Terminate reached the backend');
    } finally {
      t.close();
    }
    const split = await relayed(undefined, true);
    try {
      // Extended protocol with no Sync yet, then a Terminate whose header arrives a byte at a time.
      split.clientPeer.write(fe.parse({ name: '', sql: 'select 1', paramTypes: [] }).raw);
      await until(() => split.relay.status().unsynced, 5000, 'the Parse to be seen');
      await trickle(split.clientPeer, fe.terminate().raw);
      await until(() => split.relay.status().terminateSplit, 5000, 'the split Terminate to be recognised');
      await until(() => split.atBackend().subarray(-5).equals(fe.terminate().raw), 5000, 'the rest of the Terminate to go on');
      assert.equal(split.ends.length, 0, 'relayed on: the backend has it and will close');
    } finally {
      split.close();
    }
  });


  it('relays byte for byte and keeps the state, with every message split at every byte', async () => {
    const t = await relayed();
    try {
      const query = fe.query('select 1').raw;
      await trickle(t.clientPeer, query);
      await until(() => t.atBackend().length === query.length, 5000, 'the query to arrive');
      assert.deepEqual(t.atBackend(), query);
      assert.equal(t.relay.status().unanswered, 1);

      const reply = Buffer.concat([be.parameterStatus('application_name', 'näive'), be.readyForQuery('T')].map((m) => m.raw));
      await trickle(t.backendPeer, reply);
      await until(() => t.atClient().length === reply.length, 5000, 'the reply to arrive');
      assert.deepEqual(t.atClient(), reply);
      const status = t.relay.status();
      assert.equal(status.transactionStatus, 'T');
      assert.equal(status.unanswered, 0);
      assert.equal(status.bytesToBackend, query.length);
      assert.equal(status.bytesToClient, reply.length);
      assert.deepEqual(t.params, [Buffer.from('application_name\0näive\0').toString('latin1')]);
      assert.deepEqual(t.ends, []);
    } finally {
      t.close();
    }
  });

  it('stops only at a message boundary, and reads nothing past it', async () => {
    const t = await relayed();
    try {
      const row = be.dataRow([Buffer.from('x'.repeat(100))]).raw;
      const next = be.readyForQuery('I').raw;
      t.backendPeer.write(row.subarray(0, 50));
      await until(() => t.atClient().length === 50, 5000, 'half the row to arrive');
      assert.equal(t.relay.stop(), undefined, 'not at a boundary: it cannot stop at once');
      // The rest of the row and the next message in one segment: the relay takes only the row.
      t.backendPeer.write(Buffer.concat([row.subarray(50), next]));
      await until(() => t.ends.length === 1, 5000, 'the relay to stop');
      assert.equal(t.ends[0]!.reason, 'stopped');
      assert.deepEqual(t.atClient(), row);
      // What it left is still in the socket, for Node to read.
      const left = new Promise<Buffer>((r) => t.backend.once('data', r));
      t.backend.resume();
      assert.deepEqual(await left, next);
      assert.equal(t.ends[0]!.clientMidMessage, false);
    } finally {
      t.close();
    }
  });

  it('stops at once when both directions are at a boundary', async () => {
    const t = await relayed();
    try {
      const end = t.relay.stop();
      assert.equal(end?.reason, 'stopped');
      assert.equal(t.relay.stop(), undefined, 'stopping twice does nothing');
    } finally {
      t.close();
    }
  });

  it('ends on an impossible length with the offending header, forwarding nothing of it', async () => {
    const t = await relayed({ client: 1 << 30, backend: 1 << 30 });
    try {
      t.clientPeer.write(Buffer.from([0x51, 0, 0, 0, 2]));
      await until(() => t.ends.length === 1, 5000, 'the relay to end');
      assert.equal(t.ends[0]!.reason, 'client-violation');
      assert.deepEqual(t.ends[0]!.violation, { code: 'Q', length: 2 });
      assert.equal(t.atBackend().length, 0);
    } finally {
      t.close();
    }
  });

  it('applies the length limit it was given', async () => {
    const t = await relayed({ client: 1 << 30, backend: 1000 });
    try {
      t.backendPeer.write(be.dataRow([Buffer.alloc(2000)]).raw);
      await until(() => t.ends.length === 1, 5000, 'the relay to end');
      assert.equal(t.ends[0]!.reason, 'backend-violation');
      assert.equal(t.ends[0]!.violation?.code, 'D');
    } finally {
      t.close();
    }
  });

  it("reports the backend's EOF and whether its last word was FATAL", async () => {
    const t = await relayed();
    try {
      t.backendPeer.end(be.errorResponse({ severity: 'FATAL', severityV: 'FATAL', code: '57P01', message: 'terminating connection due to administrator command' }).raw);
      await until(() => t.ends.length === 1, 5000, 'the relay to end');
      assert.equal(t.ends[0]!.reason, 'backend-eof');
      assert.equal(t.ends[0]!.backendSaidFatal, true);
    } finally {
      t.close();
    }
  });

  it("reports the client's EOF, after Terminate", async () => {
    const t = await relayed();
    try {
      t.clientPeer.end(fe.terminate().raw);
      await until(() => t.ends.length === 1, 5000, 'the relay to end');
      assert.equal(t.ends[0]!.reason, 'client-eof');
      assert.equal(t.ends[0]!.terminated, true);
      assert.deepEqual(t.atBackend(), fe.terminate().raw);
    } finally {
      t.close();
    }
  });

  it('frees every relay once it has ended and nothing holds it', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    // The relays of the cases above, all ended by now, are freed too.
    await until(() => (gc(), NativeRelay.live() === 0), 5000, 'the earlier relays to be freed');
    for (let i = 0; i < 20; i++) {
      const t = await relayed();
      t.clientPeer.end(fe.terminate().raw);
      await until(() => t.ends.length === 1, 5000, 'the relay to end');
      t.close();
    }
    await until(() => (gc(), NativeRelay.live() === 0), 5000, 'the ended relays to be freed');
  });
});
