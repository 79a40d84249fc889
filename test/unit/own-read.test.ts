import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { acceptWithOwnReadBuffer, adoptWithOwnReadBuffer, chunkRouteOf, connectWithOwnReadBuffer, parkReading, unparkReading } from '../../src/transport/own-read.js';
import { readSocket } from '../../src/transport/socket-io.js';
import { be } from '../../src/protocol/index.js';
import { listening, pairOf, socketPair, connected } from '../helpers/loopback.js';
import { until } from '../helpers/wait.js';

interface OwnBufferPair {
  /** The socket reading into its own regions. */
  client: net.Socket;
  /** The other end, an ordinary socket. */
  peer: net.Socket;
  close: () => void;
}

/** Dialled with `connectWithOwnReadBuffer`; the accepted end is the peer. */
async function dialledPair(): Promise<OwnBufferPair> {
  const { server, port } = await listening();
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const client = connectWithOwnReadBuffer({ host: '127.0.0.1', port });
  const peer = await accepted;
  await connected(client);
  return pairOf(client, peer, server);
}

/** Accepted by a `pauseOnConnect` server and adopted with `adoptWithOwnReadBuffer`; the dialler is the peer. */
async function acceptedPair(): Promise<OwnBufferPair> {
  const { server, port } = await listening({ pauseOnConnect: true });
  const accepted = new Promise<net.Socket>((r) => server.once('connection', (s: net.Socket) => r(adoptWithOwnReadBuffer(s))));
  const peer = net.connect(port, '127.0.0.1');
  const client = await accepted;
  await connected(peer);
  return pairOf(client, peer, server);
}

/**
 * Accepted through `acceptWithOwnReadBuffer`: one socket per connection, made over the accepted
 * handle; Node's own Socket (and its 'connection' event) never comes to be.
 */
async function acceptedDirectlyPair(): Promise<OwnBufferPair> {
  const { server, port } = await listening({ pauseOnConnect: true, noDelay: true });
  server.on('connection', () => assert.fail("net.Server's own path made a socket"));
  const accepted = new Promise<net.Socket>((r) => assert.ok(acceptWithOwnReadBuffer(server, r)));
  const peer = net.connect(port, '127.0.0.1');
  const client = await accepted;
  assert.ok(chunkRouteOf(client), 'made with a route of its own');
  await connected(peer);
  return pairOf(client, peer, server);
}

for (const [name, ownBufferPair] of [
  ['connectWithOwnReadBuffer', dialledPair],
  ['adoptWithOwnReadBuffer', acceptedPair],
  ['acceptWithOwnReadBuffer', acceptedDirectlyPair],
] as const) describe(name, () => {
  it('reads into regions of its own, not buffers Node allocated per read', async () => {
    const { client, peer, close } = await ownBufferPair();
    try {
      const chunks: Buffer[] = [];
      const two = new Promise<void>((resolve) =>
        client.on('data', (c: Buffer) => {
          chunks.push(c);
          if (chunks.length === 1) peer.write('second');
          else resolve();
        }),
      );
      client.resume();
      peer.write('first');
      await two;
      // Node's own reads land in a fresh 64 KiB allocation each; ours follow one another in a
      // region that starts at 2 KiB (an idle socket holds no more).
      assert.equal(chunks[0]!.buffer.byteLength, 2 * 1024);
      assert.equal(chunks[1]!.buffer, chunks[0]!.buffer);
      assert.equal(chunks[1]!.byteOffset, chunks[0]!.byteOffset + chunks[0]!.length);
      assert.equal(Buffer.concat(chunks).toString(), 'firstsecond');
    } finally {
      close();
    }
  });

  it('hands chunks to a reader directly while it reads, and as data events otherwise', async () => {
    const { client, peer, close } = await ownBufferPair();
    try {
      const events: string[] = [];
      client.on('data', (c: Buffer) => events.push(`data:${c.toString('latin1', 5)}`));
      const first = new Promise<void>((resolve) => {
        const detach = readSocket(client, {
          chunk: (c) => {
            events.push(`read:${c.toString('latin1', 5)}`);
            detach();
            resolve();
          },
          end: () => {},
          error: () => {},
        });
      });
      peer.write(be.commandComplete('ONE').raw);
      await first;
      const later = new Promise<void>((r) => client.once('data', () => r()));
      peer.write(be.commandComplete('TWO').raw);
      await later;
      assert.deepEqual(events, ['read:ONE\0', 'data:TWO\0']);
    } finally {
      close();
    }
  });

  it('writes, knows its peer, and closes like any socket', async () => {
    const { client, peer, close } = await ownBufferPair();
    try {
      assert.equal(client.remotePort, peer.localPort);
      assert.equal(client.remoteAddress, '127.0.0.1');
      const echoed: Buffer[] = [];
      peer.on('data', (c: Buffer) => echoed.push(c));
      const peerEnded = new Promise((r) => peer.once('end', r));
      client.on('data', (c: Buffer) => client.write(c));
      client.resume();
      peer.write('ping');
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(Buffer.concat(echoed).toString(), 'ping');
      const clientClosed = new Promise((r) => client.once('close', r));
      peer.end();
      await clientClosed;
      await peerEnded;
    } finally {
      close();
    }
  });

  it('reads nothing until resumed, then delivers what was sent meanwhile', async () => {
    const { client, peer, close } = await ownBufferPair();
    try {
      peer.write('sent before anyone listened');
      await new Promise((r) => setTimeout(r, 50));
      const got: Buffer[] = [];
      client.on('data', (c: Buffer) => got.push(c));
      assert.equal(got.length, 0);
      client.resume();
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(Buffer.concat(got).toString(), 'sent before anyone listened');
    } finally {
      close();
    }
  });

  it('grows its region while reads fill it, up to 64 KiB, and lets it shrink again for small reads', async () => {
    const { client, peer, close } = await ownBufferPair();
    try {
      const sizes: number[] = [];
      let received = 0;
      const total = 4 * 1024 * 1024;
      const done = new Promise<void>((resolve) =>
        client.on('data', (c: Buffer) => {
          sizes.push(c.buffer.byteLength);
          received += c.length;
          if (received === total) resolve();
        }),
      );
      client.resume();
      peer.write(Buffer.alloc(total, 7));
      await done;
      assert.equal(Math.max(...sizes), 64 * 1024);
      const small: number[] = [];
      client.removeAllListeners('data');
      client.on('data', (c: Buffer) => small.push(c.buffer.byteLength));
      for (let i = 0; i < 12; i++) {
        peer.write('x');
        await until(() => small.length === i + 1, 2000, 'a one-byte read');
      }
      assert.equal(small.at(-1), 2 * 1024, 'back to the smallest region');
    } finally {
      close();
    }
  });

  it('never overwrites a chunk it handed out, across many reads and fresh regions', async () => {
    const { client, peer, close } = await ownBufferPair();
    try {
      const kept: { chunk: Buffer; copy: Buffer }[] = [];
      let total = 0;
      const want = 200;
      const done = new Promise<void>((resolve) => {
        client.on('data', (chunk: Buffer) => {
          kept.push({ chunk, copy: Buffer.from(chunk) });
          total += chunk.length;
          if (total >= want * 1000) resolve();
          else peer.write(Buffer.alloc(1000, kept.length % 251));
        });
      });
      client.resume();
      // One 1000-byte write at a time, each answered before the next: 200 reads, several regions.
      peer.write(Buffer.alloc(1000, 0));
      await done;
      assert.ok(kept.length >= want / 2, `expected many separate reads, got ${kept.length}`);
      for (const { chunk, copy } of kept) assert.ok(chunk.equals(copy), 'a chunk changed after it was handed out');
    } finally {
      close();
    }
  });

  it('delivers a 1 MiB stream intact, with pause and resume for backpressure, then ends', async () => {
    const { client, peer, close } = await ownBufferPair();
    try {
      const sent = Buffer.alloc(1024 * 1024);
      for (let i = 0; i < sent.length; i++) sent[i] = (i * 7) & 0xff;
      const got: Buffer[] = [];
      let pauses = 0;
      const ended = new Promise<void>((r) => client.once('end', r));
      client.on('data', (c: Buffer) => {
        got.push(c);
        if (got.length % 8 === 0) {
          pauses++;
          client.pause();
          setTimeout(() => client.resume(), 1);
        }
      });
      client.resume();
      peer.end(sent);
      await ended;
      assert.ok(pauses > 0);
      assert.ok(Buffer.concat(got).equals(sent));
    } finally {
      close();
    }
  });
});

describe('adoptWithOwnReadBuffer', () => {
  it('leaves a socket that is already reading as it is', async () => {
    const { a: peer, b: socket, close } = await socketPair();
    try {
      assert.equal(adoptWithOwnReadBuffer(socket), socket);
      const got = new Promise<Buffer>((r) => socket.once('data', r));
      peer.write('still readable');
      assert.equal((await got).toString(), 'still readable');
    } finally {
      close();
    }
  });
});

describe('parkReading and unparkReading', () => {
  /** The first chunk `client` reads of `bytes` bytes the peer sends. */
  async function firstChunk(pair: OwnBufferPair, bytes: number): Promise<Buffer> {
    const got = new Promise<Buffer>((r) => pair.client.once('data', r));
    pair.client.resume();
    pair.peer.write(Buffer.alloc(bytes, 7));
    return got;
  }

  it('reads into 64 bytes while parked, into a region of the smallest size once unparked', async () => {
    for (const unpark of [false, true]) {
      const pair = await dialledPair();
      try {
        assert.equal(unparkReading(pair.client), false, 'not parked yet');
        assert.equal(parkReading(pair.client), true);
        if (unpark) assert.equal(unparkReading(pair.client), true);
        const chunk = await firstChunk(pair, 150);
        assert.equal(chunk.length, unpark ? 150 : 64, unpark ? 'one read' : 'the parked bytes first');
        assert.equal(chunk.buffer.byteLength, unpark ? 2 * 1024 : 64);
      } finally {
        pair.close();
      }
    }
  });
});

