import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { describe, it } from 'node:test';
import { connectWithOwnReadBuffer, parkReading } from '../../src/transport/own-read.js';
import { until } from '../helpers/wait.js';

/** A socket of own-read.ts connected to a plain peer on loopback, both closed with the server. */
async function ownReadPair(): Promise<{ socket: net.Socket; peer: net.Socket; close: () => void }> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const socket = connectWithOwnReadBuffer({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port });
  const peer = await accepted;
  if (socket.connecting) await new Promise((r) => socket.once('connect', r));
  return {
    socket,
    peer,
    close: () => {
      socket.destroy();
      peer.destroy();
      server.close();
    },
  };
}

/** The view Node's handle reads into next (Node's private kBuffer), or undefined. */
function nextReadView(socket: net.Socket): Uint8Array | undefined {
  const symbol = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'kBuffer');
  const view = symbol && (socket as unknown as Record<symbol, unknown>)[symbol];
  return view instanceof Uint8Array ? view : undefined;
}

/** Reads `socket` until `length` bytes came, then pauses it. */
async function readBytes(socket: net.Socket, length: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let got = 0;
  await new Promise<void>((resolve) => {
    const onData = (chunk: Buffer) => {
      // Copied: a chunk is a view of a region the socket goes on reading into.
      chunks.push(Buffer.from(chunk));
      got += chunk.length;
      if (got < length) return;
      socket.off('data', onData);
      socket.pause();
      resolve();
    };
    socket.on('data', onData);
    socket.resume();
  });
  return Buffer.concat(chunks);
}

describe('parkReading', () => {
  it('gives back a paused socket’s read region; once resumed it reads everything, intact and in order', async () => {
    const { socket, peer, close } = await ownReadPair();
    try {
      const first = randomBytes(3000);
      peer.write(first);
      assert.deepEqual(await readBytes(socket, first.length), first);
      assert.ok((nextReadView(socket)?.buffer.byteLength ?? 0) >= 2048, 'a socket that read holds a region of 2 KiB or more');

      assert.equal(parkReading(socket), true);
      assert.equal(nextReadView(socket)?.byteLength, 64, 'a parked socket keeps 64 bytes to read into');

      // More than the parked region and than the smallest region: the reads grow again.
      const second = randomBytes(200_000);
      peer.write(second);
      assert.deepEqual(await readBytes(socket, second.length), second);
      assert.ok((nextReadView(socket)?.byteLength ?? 0) > 64, 'reading again gets a region of its own');

      const ended = new Promise((r) => socket.once('end', r));
      peer.end();
      socket.resume();
      await ended;
    } finally {
      close();
    }
  });

  it('sees the peer’s close while parked, once resumed', async () => {
    const { socket, peer, close } = await ownReadPair();
    try {
      assert.equal(parkReading(socket), true);
      peer.end('bye');
      const got: Buffer[] = [];
      socket.on('data', (c: Buffer) => got.push(Buffer.from(c)));
      const ended = new Promise((r) => socket.once('end', r));
      socket.resume();
      await ended;
      assert.equal(Buffer.concat(got).toString(), 'bye');
    } finally {
      close();
    }
  });

  it('leaves a reading socket, and sockets not read through own-read.ts, as they are', async () => {
    const { socket, peer, close } = await ownReadPair();
    try {
      socket.on('data', () => {});
      socket.resume();
      await until(() => (socket as unknown as { _handle: { reading: boolean } })._handle.reading, 2000, 'the socket to read');
      const view = nextReadView(socket);
      assert.equal(parkReading(socket), false, 'a socket that reads keeps its region');
      assert.equal(nextReadView(socket), view);
      assert.equal(parkReading(peer), false, 'a plain net.Socket has no region of ours');
    } finally {
      close();
    }
  });
});
