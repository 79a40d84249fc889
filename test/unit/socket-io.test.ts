import assert from 'node:assert/strict';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { adoptWithOwnReadBuffer, connectWithOwnReadBuffer } from '../../src/transport/own-read.js';
import { readSocket, SocketSink } from '../../src/transport/socket-io.js';
import { be, backendMessage, Framer, type BackendMessage } from '../../src/protocol/index.js';
import { until } from '../helpers/wait.js';

async function listening(options: net.ServerOpts = {}): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer(options);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as net.AddressInfo).port };
}

async function connected(socket: net.Socket): Promise<void> {
  await new Promise((r) => (socket.connecting ? socket.once('connect', r) : r(undefined)));
}

/** Both ends of a loopback connection, closed together with their server. */
function pairOf(client: net.Socket, peer: net.Socket, server: net.Server): { client: net.Socket; peer: net.Socket; close: () => void } {
  return {
    client,
    peer,
    close: () => {
      client.destroy();
      peer.destroy();
      server.close();
    },
  };
}

/** A connected pair of real loopback sockets. */
async function socketPair(): Promise<{ a: net.Socket; b: net.Socket; close: () => void }> {
  const { server, port } = await listening();
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const a = net.connect(port, '127.0.0.1');
  const b = await accepted;
  await connected(a);
  return { a, b, close: pairOf(a, b, server).close };
}

/** A SocketSink over an in-memory stream, with every buffer it writes recorded as given. */
function recordingSink(): { writes: Buffer[]; sink: SocketSink } {
  const writes: Buffer[] = [];
  const stream = new PassThrough();
  const write = stream.write.bind(stream);
  stream.write = ((chunk: Buffer, ...rest: never[]) => {
    writes.push(chunk);
    return write(chunk, ...rest);
  }) as typeof stream.write;
  return { writes, sink: new SocketSink(stream) };
}

describe('SocketSink', () => {
  it('writes frames that follow each other in one read chunk as one range of it', () => {
    const { writes, sink } = recordingSink();
    const parts = [be.commandComplete('SELECT 1').raw, be.readyForQuery('I').raw, be.readyForQuery('T').raw];
    const chunk = Buffer.concat(parts);
    const frames: { source: Buffer; offset: number; length: number }[] = [];
    new Framer().push(chunk, (_c, source, offset, length) => frames.push({ source, offset, length }));
    assert.equal(frames.length, 3);
    assert.deepEqual(
      frames.map((f) => [f.source === chunk, f.offset]),
      [
        [true, 0],
        [true, parts[0]!.length],
        [true, parts[0]!.length + parts[1]!.length],
      ],
    );

    // All three in order: the chunk itself leaves, in one write.
    for (const f of frames) sink.write(f.source, f.offset, f.length);
    sink.flush();
    assert.equal(writes.length, 1);
    assert.equal(writes[0], chunk, 'the read chunk itself, not a copy or a new view');

    // The middle one replaced by a message of its own: three writes, in order, views of the chunk.
    writes.length = 0;
    const replacement = be.readyForQuery('E').raw;
    sink.write(frames[0]!.source, frames[0]!.offset, frames[0]!.length);
    sink.write(replacement);
    sink.write(frames[2]!.source, frames[2]!.offset, frames[2]!.length);
    sink.flush();
    assert.deepEqual(writes, [parts[0], replacement, parts[2]]);
    assert.equal(writes[0]!.buffer, chunk.buffer, 'a part of the chunk is a view, not a copy');

    // A frame dropped in between: the two around it are not adjacent, so two writes.
    writes.length = 0;
    sink.write(frames[0]!.source, frames[0]!.offset, frames[0]!.length);
    sink.write(frames[2]!.source, frames[2]!.offset, frames[2]!.length);
    sink.flush();
    assert.deepEqual(writes, [parts[0], parts[2]]);

    // Same bytes at the same offsets in another buffer are not the same chunk.
    writes.length = 0;
    const twin = Buffer.from(chunk);
    sink.write(frames[0]!.source, frames[0]!.offset, frames[0]!.length);
    sink.write(twin, parts[0]!.length, parts[1]!.length);
    sink.flush();
    assert.equal(writes.length, 2);
    assert.equal(writes[1]!.buffer, twin.buffer);
  });

  it('writes messages by the range they were read from, and messages of other makers by their bytes', () => {
    const { writes, sink } = recordingSink();
    const chunk = Buffer.concat([be.commandComplete('SELECT 1').raw, be.readyForQuery('I').raw]);
    const read: BackendMessage[] = [];
    new Framer().push(chunk, (code, source, offset, length) => read.push(backendMessage(code, source, offset, length)));
    for (const m of read) sink.writeMessage(m);
    sink.flush();
    assert.deepEqual(writes, [chunk]);
    assert.equal(writes[0], chunk, 'the chunk itself');

    writes.length = 0;
    const own = be.readyForQuery('T').raw;
    const foreign = { type: 'ReadyForQuery', code: own[0]!, raw: own, payload: own.subarray(5), body: () => ({ status: 'T' }) };
    sink.writeMessage(read[0]!);
    sink.writeMessage(foreign as unknown as BackendMessage);
    sink.flush();
    assert.deepEqual(writes, [chunk.subarray(0, read[0]!.raw.length), own]);
  });

  it('queues writes while held and writes them at release, without waiting for a microtask', async () => {
    const { writes, sink } = recordingSink();
    sink.hold();
    sink.hold(); // nested holds: only the outermost release writes
    const chunk = Buffer.concat([be.commandComplete('SELECT 1').raw, be.readyForQuery('I').raw]);
    new Framer().push(chunk, (_c, source, offset, length) => sink.write(source, offset, length));
    sink.release();
    assert.equal(writes.length, 0, 'still held by the outer hold');
    sink.release();
    assert.equal(writes.length, 1, 'written synchronously at the last release, in one write');
    assert.deepEqual(writes[0], chunk);
    await new Promise((r) => setImmediate(r));
    assert.equal(writes.length, 1, 'the release left nothing for a later flush');

    sink.write(be.readyForQuery('T').raw); // outside a hold: flushed in a microtask
    assert.equal(writes.length, 1);
    await Promise.resolve();
    assert.equal(writes.length, 2);
  });

  it('pauses the feeding socket while the destination is full and resumes on drain', async () => {
    const out = await socketPair();
    const feed = await socketPair();
    try {
      out.b.pause(); // the reader of `out` stops reading: the kernel buffers fill up
      const sink = new SocketSink(out.a, feed.b);
      const big = Buffer.alloc(1024 * 1024, 1);
      let rounds = 0;
      while (!feed.b.isPaused() && rounds < 200) {
        sink.write(Buffer.from(big));
        sink.flush();
        rounds++;
        await new Promise((r) => setImmediate(r));
      }
      assert.equal(feed.b.isPaused(), true, 'feeder paused once the writer reported a full buffer');
      out.b.resume();
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('feeder never resumed')), 10_000);
        const check = () => (feed.b.isPaused() ? setTimeout(check, 10) : (clearTimeout(t), resolve()));
        check();
      });
      assert.ok(sink.bytesWritten >= big.length * rounds);
    } finally {
      out.close();
      feed.close();
    }
  });
});

describe('readSocket', () => {
  it('hands over every chunk as read, then the end, and removes its listeners when detached', async () => {
    const { a, b, close } = await socketPair();
    try {
      const chunks: Buffer[] = [];
      let ended = 0;
      const listeners = () => ['data', 'end', 'error', 'close'].map((e) => b.listenerCount(e));
      const before = listeners();
      const detach = readSocket(b, { chunk: (c) => chunks.push(c), end: () => ended++, error: () => assert.fail('no error expected') });
      const all = Buffer.concat([be.parameterStatus('a', '1'), be.commandComplete('SELECT 1'), be.readyForQuery('I')].map((m) => m.raw));
      for (let i = 0; i < all.length; i += 3) {
        a.write(all.subarray(i, i + 3));
        await new Promise((r) => setImmediate(r));
      }
      a.end();
      while (ended === 0) await new Promise((r) => setImmediate(r));
      assert.deepEqual(Buffer.concat(chunks), all);
      detach();
      assert.deepEqual(listeners(), before);
    } finally {
      close();
    }
  });

  it('reports a socket already at its end at once', async () => {
    const { a, b, close } = await socketPair();
    try {
      b.destroy();
      let ended = 0;
      readSocket(b, { chunk: () => assert.fail('nothing to read'), end: () => ended++, error: () => {} });
      assert.equal(ended, 1);
      void a;
    } finally {
      close();
    }
  });

  it('passes socket errors on', async () => {
    const { a, b, close } = await socketPair();
    try {
      const failed = new Promise<unknown>((resolve) => readSocket(b, { chunk: () => {}, end: () => {}, error: resolve }));
      a.resetAndDestroy();
      assert.match(String((await failed) as Error), /ECONNRESET/);
    } finally {
      close();
    }
  });
});

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

for (const [name, ownBufferPair] of [
  ['connectWithOwnReadBuffer', dialledPair],
  ['adoptWithOwnReadBuffer', acceptedPair],
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
