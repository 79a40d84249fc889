import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  backendMessage,
  be,
  decodeStartupPacket,
  encodeCancelRequest,
  encodeStartupMessage,
  fe,
  Framer,
  frameView,
  frontendMessage,
  leadingCString,
  Limits,
  PgError,
  readyStatus,
  UNTYPED,
} from '../../src/protocol/index.js';

// Fixtures are written out byte by byte from the protocol documentation, not with our encoder.
const cstr = (s: string) => [...Buffer.from(s, 'utf8'), 0];
const i32 = (n: number) => [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
const i16 = (n: number) => [(n >>> 8) & 255, n & 255];
function msg(code: string, body: number[]): Buffer {
  return Buffer.from([code.charCodeAt(0), ...i32(body.length + 4), ...body]);
}

const FIXTURES = {
  query: msg('Q', cstr('select 1')),
  parse: msg('P', [...cstr('s1'), ...cstr('select $1::int'), ...i16(1), ...i32(23)]),
  bind: msg('B', [...cstr(''), ...cstr('s1'), ...i16(1), ...i16(0), ...i16(2), ...i32(2), ...Buffer.from('42'), ...i32(-1), ...i16(0)]),
  execute: msg('E', [...cstr(''), ...i32(0)]),
  describe: msg('D', ['S'.charCodeAt(0), ...cstr('s1')]),
  close: msg('C', ['P'.charCodeAt(0), ...cstr('p')]),
  sync: msg('S', []),
  readyIdle: msg('Z', ['I'.charCodeAt(0)]),
  readyTx: msg('Z', ['T'.charCodeAt(0)]),
  paramStatus: msg('S', [...cstr('server_version'), ...cstr('15.4')]),
  keyData: msg('K', [...i32(1234), ...i32(0x0badcafe)]),
  authMd5: msg('R', [...i32(5), 1, 2, 3, 4]),
  authSasl: msg('R', [...i32(10), ...cstr('SCRAM-SHA-256-PLUS'), ...cstr('SCRAM-SHA-256'), 0]),
  error: msg('E', [
    'S'.charCodeAt(0), ...cstr('ERROR'), 'V'.charCodeAt(0), ...cstr('ERROR'), 'C'.charCodeAt(0), ...cstr('42P01'),
    'M'.charCodeAt(0), ...cstr('relation "x" does not exist'), 'P'.charCodeAt(0), ...cstr('15'),
    'F'.charCodeAt(0), ...cstr('parse_relation.c'), 'L'.charCodeAt(0), ...cstr('1392'), 'R'.charCodeAt(0), ...cstr('parserOpenTable'), 0,
  ]),
  dataRow: msg('D', [...i16(2), ...i32(1), '7'.charCodeAt(0), ...i32(-1)]),
};

function frames(chunks: Buffer[], framer = new Framer()): Buffer[] {
  const out: Buffer[] = [];
  for (const c of chunks) framer.push(c, (_code, source, offset, length) => out.push(Buffer.from(source.subarray(offset, offset + length))));
  return out;
}

describe('frontend messages', () => {
  it('decodes fixtures built by hand', () => {
    assert.deepEqual(frontendMessage(0x51, FIXTURES.query).body(), { sql: 'select 1' });
    const parse = frontendMessage(0x50, FIXTURES.parse);
    assert.equal(parse.type, 'Parse');
    assert.deepEqual(parse.body(), { name: 's1', sql: 'select $1::int', paramTypes: [23] });
    const bind = frontendMessage(0x42, FIXTURES.bind);
    assert.equal(bind.type, 'Bind');
    const b = bind.body() as { portal: string; statement: string; params: (Buffer | null)[] };
    assert.equal(b.statement, 's1');
    assert.deepEqual(b.params.map((p) => p?.toString() ?? null), ['42', null]);
    assert.deepEqual(frontendMessage(0x44, FIXTURES.describe).body(), { kind: 'S', name: 's1' });
    assert.deepEqual(frontendMessage(0x43, FIXTURES.close).body(), { kind: 'P', name: 'p' });
  });

  it('encodes byte-identical to the fixtures', () => {
    assert.deepEqual(fe.query('select 1').raw, FIXTURES.query);
    assert.deepEqual(fe.parse({ name: 's1', sql: 'select $1::int', paramTypes: [23] }).raw, FIXTURES.parse);
    assert.deepEqual(
      fe.bind({ portal: '', statement: 's1', paramFormats: [0], params: [Buffer.from('42'), null], resultFormats: [] }).raw,
      FIXTURES.bind,
    );
    assert.deepEqual(fe.execute().raw, FIXTURES.execute);
    assert.deepEqual(fe.describe('S', 's1').raw, FIXTURES.describe);
    assert.deepEqual(fe.close('P', 'p').raw, FIXTURES.close);
    assert.deepEqual(fe.sync().raw, FIXTURES.sync);
  });

  it('does not decode until asked (lazy)', () => {
    // A malformed Query (no terminator) passes through untouched until someone reads its body.
    const bad = msg('Q', [...Buffer.from('select')]);
    const m = frontendMessage(0x51, bad);
    assert.equal(m.raw, bad);
    assert.throws(() => m.body(), (e: unknown) => e instanceof PgError && e.sqlstate === '08P01' && e.fatal);
  });

  it('keeps unknown message types as raw payload', () => {
    const m = frontendMessage(0x7a, msg('z', [1, 2, 3]));
    assert.equal(m.type, 'Unknown');
    assert.deepEqual([...(m.body() as Buffer)], [1, 2, 3]);
  });
});

describe('backend messages', () => {
  it('decodes fixtures built by hand', () => {
    assert.deepEqual(backendMessage(0x5a, FIXTURES.readyTx).body(), { status: 'T' });
    assert.deepEqual(backendMessage(0x53, FIXTURES.paramStatus).body(), { name: 'server_version', value: '15.4' });
    const k = backendMessage(0x4b, FIXTURES.keyData).body() as { processId: number; secretKey: Buffer };
    assert.equal(k.processId, 1234);
    assert.equal(k.secretKey.readUInt32BE(0), 0x0badcafe);
    assert.deepEqual(backendMessage(0x52, FIXTURES.authMd5).body(), { kind: 'MD5Password', salt: Buffer.from([1, 2, 3, 4]) });
    assert.deepEqual(backendMessage(0x52, FIXTURES.authSasl).body(), {
      kind: 'SASL',
      mechanisms: ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'],
    });
    assert.deepEqual(backendMessage(0x45, FIXTURES.error).body(), {
      severity: 'ERROR', severityV: 'ERROR', code: '42P01', message: 'relation "x" does not exist', position: '15',
      file: 'parse_relation.c', line: '1392', routine: 'parserOpenTable',
    });
    const row = backendMessage(0x44, FIXTURES.dataRow).body() as { values: (Buffer | null)[] };
    assert.deepEqual(row.values.map((v) => v?.toString() ?? null), ['7', null]);
  });

  it('encodes byte-identical to the fixtures', () => {
    assert.deepEqual(be.readyForQuery('I').raw, FIXTURES.readyIdle);
    assert.deepEqual(be.parameterStatus('server_version', '15.4').raw, FIXTURES.paramStatus);
    const key = Buffer.alloc(4);
    key.writeUInt32BE(0x0badcafe);
    assert.deepEqual(be.backendKeyData(1234, key).raw, FIXTURES.keyData);
    assert.deepEqual(be.authMD5(Buffer.from([1, 2, 3, 4])).raw, FIXTURES.authMd5);
    assert.deepEqual(be.authentication({ kind: 'SASL', mechanisms: ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'] }).raw, FIXTURES.authSasl);
    assert.deepEqual(be.dataRow([Buffer.from('7'), null]).raw, FIXTURES.dataRow);
    const err = backendMessage(0x45, FIXTURES.error).body() as Record<string, string>;
    assert.deepEqual(be.errorResponse(err).raw, FIXTURES.error);
  });

  it('reads the transaction status of a ReadyForQuery wherever it lies in its chunk', () => {
    const chunk = Buffer.concat([FIXTURES.paramStatus, FIXTURES.readyTx, FIXTURES.readyIdle]);
    const inChunk = backendMessage(0x5a, chunk, FIXTURES.paramStatus.length, FIXTURES.readyTx.length);
    assert.equal(readyStatus(inChunk), 'T');
    assert.equal(readyStatus(backendMessage(0x5a, FIXTURES.readyIdle)), 'I');
    assert.equal(readyStatus(be.readyForQuery('E')), 'E');
  });

  it('reads the C string a message starts with as its body does, wherever it lies in its chunk', () => {
    const query = fe.query('select \'é\'; select 2').raw;
    const tag = be.commandComplete('INSERT 0 12').raw;
    const chunk = Buffer.concat([FIXTURES.readyTx, query, tag, FIXTURES.readyIdle]);
    const q = frontendMessage(query[0]!, chunk, FIXTURES.readyTx.length, query.length);
    const c = backendMessage(tag[0]!, chunk, FIXTURES.readyTx.length + query.length, tag.length);
    assert.equal(leadingCString(q), 'select \'é\'; select 2');
    assert.equal(leadingCString(c), 'INSERT 0 12');
    assert.equal(leadingCString(be.commandComplete('SELECT 1')), 'SELECT 1', 'a message with a buffer of its own');
    // A string that runs past its message (into the next one's bytes) is malformed, as body() says.
    const cut = Buffer.from([0x43, 0, 0, 0, 7, 0x41, 0x42, 0x5a, 0, 0, 0, 5, 0x49]);
    const bad = backendMessage(0x43, cut, 0, 7);
    assert.throws(() => bad.body(), /unterminated string/);
    assert.throws(() => leadingCString(bad), /malformed CommandComplete message: unterminated string/);
  });

  it('round-trips PgError through ErrorResponse with every field', () => {
    const e = new PgError('FATAL', '28P01', 'token expired', { detail: 'd', hint: 'h' });
    const decoded = backendMessage(0x45, be.errorResponse(e.toFields()).raw).body() as Record<string, string>;
    const back = PgError.fromFields(decoded);
    assert.equal(back.severity, 'FATAL');
    assert.equal(back.sqlstate, '28P01');
    assert.equal(back.message, 'token expired');
    assert.equal(back.detail, 'd');
    assert.equal(back.hint, 'h');
  });
});

describe('framer', () => {
  const stream = Buffer.concat(Object.values(FIXTURES));
  const expected = Object.values(FIXTURES);

  it('frames a merged stream into the original messages without copying', () => {
    const views: Buffer[] = [];
    const sources: Buffer[] = [];
    new Framer().push(stream, (_c, source, offset, length) => {
      sources.push(source);
      views.push(frameView(source, offset, length));
    });
    assert.deepEqual(views, expected);
    assert.ok(sources.every((s) => s === stream), 'frames within one chunk are ranges of that chunk');
    assert.equal(views[0]!.buffer, stream.buffer, 'their views share its memory');
  });

  it('hands a frame assembled across chunks over as a buffer of its own, whole', () => {
    const got: { source: Buffer; offset: number; length: number }[] = [];
    const framer = new Framer();
    const sink = (_c: number, source: Buffer, offset: number, length: number) => got.push({ source, offset, length });
    const first = stream.subarray(0, 3);
    const rest = stream.subarray(3);
    framer.push(first, sink);
    framer.push(rest, sink);
    assert.equal(got.length, expected.length);
    assert.ok(got[0]!.source !== first && got[0]!.source !== rest, 'assembled, not either chunk');
    assert.deepEqual([got[0]!.offset, got[0]!.length, got[0]!.source.length], [0, expected[0]!.length, expected[0]!.length]);
    assert.deepEqual(got[0]!.source, expected[0]);
    assert.equal(got[1]!.source, rest, 'the frames after it are ranges of the second chunk');
  });

  it('splits at every byte position', () => {
    for (let i = 0; i <= stream.length; i++) {
      assert.deepEqual(frames([stream.subarray(0, i), stream.subarray(i)]), expected, `split at ${i}`);
    }
  });

  it('handles one byte at a time', () => {
    const chunks = [...stream].map((b) => Buffer.from([b]));
    assert.deepEqual(frames(chunks), expected);
  });

  it('handles any chunking (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: stream.length }), { maxLength: 12 }), (cuts) => {
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        const chunks: Buffer[] = [];
        let prev = 0;
        for (const p of points) {
          chunks.push(stream.subarray(prev, p));
          prev = p;
        }
        chunks.push(stream.subarray(prev));
        assert.deepEqual(frames(chunks), expected);
      }),
    );
  });

  it('refuses oversize and impossible lengths with FATAL 08P01', () => {
    const tooBig = Buffer.from([0x51, ...i32(Limits.authMessage + 1)]);
    const f = new Framer({ maxLength: Limits.authMessage });
    assert.throws(() => f.push(tooBig, () => {}), (e: unknown) => e instanceof PgError && e.sqlstate === '08P01');
    assert.throws(() => new Framer().push(Buffer.from([0x51, ...i32(3)]), () => {}), /invalid message length 3/);
    assert.throws(() => new Framer().push(Buffer.from([0x51, 0xff, 0xff, 0xff, 0xff]), () => {}), PgError);
  });

  it('never throws anything but PgError on random input', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const f = new Framer({ maxLength: 1000 });
        try {
          f.push(Buffer.from(bytes), (code, source, offset, length) => {
            frontendMessage(code, source, offset, length).type;
          });
        } catch (e) {
          assert.ok(e instanceof PgError && e.sqlstate === '08P01');
        }
      }),
    );
  });

  it('frames untyped startup packets and switches to typed', () => {
    const startup = encodeStartupMessage([['user', 'alice'], ['database', 'db']]);
    const both = Buffer.concat([startup, FIXTURES.query]);
    for (let i = 0; i <= both.length; i++) {
      const f = new Framer({ untyped: true, maxLength: Limits.startupPacket });
      const got: [number, Buffer][] = [];
      for (const c of [both.subarray(0, i), both.subarray(i)]) {
        f.push(c, (code, source, offset, length) => {
          got.push([code, Buffer.from(frameView(source, offset, length))]);
          f.untyped = false;
        });
      }
      assert.equal(got.length, 2, `split at ${i}`);
      assert.equal(got[0]![0], UNTYPED);
      assert.deepEqual(got[1]![1], FIXTURES.query);
    }
  });
});

describe('startup packets', () => {
  it('decodes a StartupMessage built by hand', () => {
    const body = [...i32(196608), ...cstr('user'), ...cstr('alice'), ...cstr('database'), ...cstr('db'), 0];
    const raw = Buffer.from([...i32(body.length + 4), ...body]);
    const p = decodeStartupPacket(raw);
    assert.equal(p.kind, 'StartupMessage');
    if (p.kind !== 'StartupMessage') return;
    assert.equal(p.minor, 0);
    assert.deepEqual([...p.params], [['user', 'alice'], ['database', 'db']]);
    assert.deepEqual(encodeStartupMessage(p.params), raw);
  });

  it('recognises SSLRequest, GSSENCRequest and CancelRequest (3.0 and 3.2 key sizes)', () => {
    assert.deepEqual(decodeStartupPacket(Buffer.from([...i32(8), ...i32(80877103)])), { kind: 'SSLRequest' });
    assert.deepEqual(decodeStartupPacket(Buffer.from([...i32(8), ...i32(80877104)])), { kind: 'GSSENCRequest' });
    const c = decodeStartupPacket(Buffer.from([...i32(16), ...i32(80877102), ...i32(42), ...i32(7)]));
    assert.deepEqual(c, { kind: 'CancelRequest', processId: 42, secretKey: Buffer.from(i32(7)) });
    const long = Buffer.alloc(32, 9);
    const c32 = decodeStartupPacket(encodeCancelRequest(42, long));
    assert.ok(c32.kind === 'CancelRequest' && c32.secretKey.equals(long));
  });

  it('refuses unknown protocol versions with 0A000 (as PostgreSQL) and malformed layouts with 08P01', () => {
    const v2 = Buffer.from([...i32(8), ...i32(2 << 16)]);
    assert.throws(() => decodeStartupPacket(v2), (e: unknown) => e instanceof PgError && e.sqlstate === '0A000' && !e.silent);
    const unterminated = Buffer.from([...i32(13), ...i32(196608), ...Buffer.from('user')]);
    assert.throws(() => decodeStartupPacket(unterminated), (e: unknown) => e instanceof PgError && e.sqlstate === '08P01');
  });

  it('frames bytes after a StartupMessage as typed messages, but keeps requests untyped', () => {
    const framer = new Framer({ untyped: true, maxLength: Limits.startupPacket, typedMaxLength: Limits.authMessage });
    const ssl = Buffer.from([...i32(8), ...i32(80877103)]);
    const startup = Buffer.from([...i32(9), ...i32(196608), 0]);
    const password = Buffer.from([0x70, ...i32(6), 0x78, 0]);
    const codes: number[] = [];
    framer.push(Buffer.concat([ssl, startup, password]), (code) => void codes.push(code));
    assert.deepEqual(codes, [UNTYPED, UNTYPED, 0x70]);
    assert.equal(framer.maxLength, Limits.authMessage);
  });
});
