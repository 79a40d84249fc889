import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Framer, PgError, STREAM_ABOVE } from '../../src/protocol/index.js';

const d = 'd'.charCodeAt(0);
const Q = 'Q'.charCodeAt(0);

function msg(code: number, body: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h[0] = code;
  h.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([h, body]);
}

/** Feeds `bytes` cut at `cuts`; returns whole frames and streamed bytes in order. */
function run(framer: Framer, bytes: Buffer, cuts: number[]) {
  const out: { code: number; bytes: Buffer; pieces?: number }[] = [];
  let streaming: Buffer[] | null = null;
  framer.bound({
    maxAssembled: 256 * 1024,
    stream: {
      codes: [d],
      sink: (code, src, off, len, last) => {
        streaming ??= [];
        streaming.push(Buffer.from(src.subarray(off, off + len)));
        if (last) {
          out.push({ code, bytes: Buffer.concat(streaming), pieces: streaming.length });
          streaming = null;
        }
      },
    },
  });
  let at = 0;
  for (const c of [...cuts, bytes.length]) {
    framer.push(bytes.subarray(at, c), (code, src, off, len) => out.push({ code, bytes: Buffer.from(src.subarray(off, off + len)) }));
    at = c;
  }
  return out;
}

test('a large CopyData is streamed in pieces at every split point, neighbours framed whole', () => {
  const big = msg(d, Buffer.alloc(STREAM_ABOVE + 10, 7));
  const small = msg(Q, Buffer.from('select 1\0'));
  const all = Buffer.concat([small, big, small]);
  for (const cut of [1, 3, small.length, small.length + 2, small.length + 5, small.length + 100, small.length + big.length - 1, small.length + big.length + 2]) {
    const out = run(new Framer(), all, [cut, Math.min(cut + 16 * 1024, all.length)]);
    assert.equal(out.length, 3, `cut ${cut}`);
    assert.deepEqual(out[0]!.bytes, small);
    assert.deepEqual(out[1]!.bytes, big, `cut ${cut}`);
    // Spanning chunks it is streamed; lying whole in one chunk it is a frame like any other.
    if (cut < small.length + big.length) assert.ok(out[1]!.pieces! >= 2, `cut ${cut}: streamed, not assembled`);
    else assert.equal(out[1]!.pieces, undefined);
    assert.deepEqual(out[2]!.bytes, small);
  }
});

test('a CopyData declaring nearly 1 GiB streams in pieces with nothing buffered', () => {
  const framer = new Framer();
  let seen = 0;
  let pieces = 0;
  framer.bound({ maxAssembled: 1 << 20, stream: { codes: [d], sink: (_c, _s, _o, len) => ((seen += len), pieces++) } });
  const header = Buffer.alloc(5);
  header[0] = d;
  header.writeInt32BE(2 ** 30 - 64, 1);
  framer.push(header, () => assert.fail('no whole frame'));
  const piece = Buffer.alloc(1 << 20);
  for (let i = 0; i < 64; i++) framer.push(piece, () => assert.fail('no whole frame'));
  assert.equal(seen, 5 + 64 * piece.length);
  assert.equal(pieces, 65);
  assert.equal(framer.buffered, 0);
  assert.ok(framer.midStream);
});

test('a Query declaring more than maxMessageSize fails at its header with 54000', () => {
  const framer = new Framer();
  framer.bound({ maxAssembled: 1 << 20 });
  const header = Buffer.alloc(5);
  header[0] = Q;
  header.writeInt32BE(2 ** 30 - 64, 1);
  assert.throws(
    () => framer.push(header, () => {}),
    (e: unknown) => e instanceof PgError && e.sqlstate === '54000' && /message too long/.test(e.message),
  );
  const bad = new Framer();
  bad.bound({ maxAssembled: 1 << 20 });
  header.writeInt32BE(2 ** 30 + 1, 1);
  assert.throws(() => bad.push(header, () => {}), (e: unknown) => e instanceof PgError && e.sqlstate === '08P01');
});

test('a Query under maxMessageSize is still assembled whole across chunks', () => {
  const q = msg(Q, Buffer.alloc(200 * 1024, 0x61));
  const out = run(new Framer(), q, [5, 1000, 100_000]);
  assert.equal(out.length, 1);
  assert.equal(out[0]!.pieces, undefined);
  assert.deepEqual(out[0]!.bytes, q);
});
