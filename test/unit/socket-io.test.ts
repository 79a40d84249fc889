import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { readSocket, SocketSink } from '../../src/transport/socket-io.js';
import { be, backendMessage, Framer, type BackendMessage } from '../../src/protocol/index.js';
import { socketPair } from '../helpers/loopback.js';

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
