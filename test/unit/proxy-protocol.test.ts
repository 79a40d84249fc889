import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import {
  encodeProxyHeaderV1,
  encodeProxyHeaderV2,
  formatIPv6,
  parseIPv6,
  parseProxyHeader,
  PROXY_V2_MAX_PAYLOAD,
  readProxyHeader,
  type ProxyHeader,
} from '../../src/server/proxy-protocol.js';

/** Bytes written out by hand from the HAProxy spec (section 2.2), independent of the encoder. */
const SIG = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const v2 = (verCmd: number, fam: number, payload: Buffer) => {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(payload.length);
  return Buffer.concat([Buffer.from(SIG), Buffer.from([verCmd, fam]), len, payload]);
};
/** What the PostgreSQL client sends next: an SSLRequest. */
const NEXT = hex('00000008 04d2162f');

const V2_TCP4 = v2(0x21, 0x11, hex('c0a80001 c0a8000b dc04 01bb')); // 192.168.0.1:56324 → 192.168.0.11:443
const V2_TCP6 = v2(
  0x21,
  0x21,
  hex('20010db8000000000000000000000001 20010db8000000000000000000000002 3039 1538'), // [2001:db8::1]:12345 → [2001:db8::2]:5432
);
const V2_UDP4 = v2(0x21, 0x12, hex('0a000001 0a000002 0035 0035'));
const V2_LOCAL = v2(0x20, 0x00, Buffer.alloc(0));
const V2_UNSPEC = v2(0x21, 0x00, Buffer.alloc(0));
// PP2_TYPE_ALPN "postgresql", PP2_TYPE_AUTHORITY "db.example", PP2_TYPE_NOOP of 3 bytes.
const TLVS = Buffer.concat([
  Buffer.from([0x01, 0x00, 0x0a]),
  Buffer.from('postgresql'),
  Buffer.from([0x02, 0x00, 0x0a]),
  Buffer.from('db.example'),
  Buffer.from([0x04, 0x00, 0x03, 0, 0, 0]),
]);
const V2_TCP4_TLVS = v2(0x21, 0x11, Buffer.concat([hex('7f000001 7f000002 ffff 0000'), TLVS]));

const tcp4: ProxyHeader = {
  command: 'PROXY',
  family: 'IPv4',
  source: { address: '192.168.0.1', port: 56324 },
  destination: { address: '192.168.0.11', port: 443 },
};
const tcp6: ProxyHeader = {
  command: 'PROXY',
  family: 'IPv6',
  source: { address: '2001:db8::1', port: 12345 },
  destination: { address: '2001:db8::2', port: 5432 },
};

const V1_TCP4 = Buffer.from('PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n');
const V1_TCP6 = Buffer.from('PROXY TCP6 2001:DB8:0:0:0:0:0:1 2001:db8::2 12345 5432\r\n');
const V1_UNKNOWN = Buffer.from('PROXY UNKNOWN\r\n');
// The longest line the spec allows: 107 bytes.
const V1_WORST = Buffer.from(
  'PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n',
);

const valid: [string, Buffer, ProxyHeader][] = [
  ['v1 TCP4', V1_TCP4, tcp4],
  ['v1 TCP6', V1_TCP6, tcp6],
  ['v1 UNKNOWN', V1_UNKNOWN, { command: 'UNKNOWN' }],
  ['v1 UNKNOWN of 107 bytes', V1_WORST, { command: 'UNKNOWN' }],
  ['v2 TCP4', V2_TCP4, tcp4],
  ['v2 TCP6', V2_TCP6, tcp6],
  [
    'v2 UDP4',
    V2_UDP4,
    { command: 'PROXY', family: 'IPv4', source: { address: '10.0.0.1', port: 53 }, destination: { address: '10.0.0.2', port: 53 } },
  ],
  ['v2 LOCAL', V2_LOCAL, { command: 'LOCAL' }],
  ['v2 AF_UNSPEC', V2_UNSPEC, { command: 'UNKNOWN' }],
  [
    'v2 TCP4 with TLVs',
    V2_TCP4_TLVS,
    { command: 'PROXY', family: 'IPv4', source: { address: '127.0.0.1', port: 65535 }, destination: { address: '127.0.0.2', port: 0 } },
  ],
];

describe('parseProxyHeader: valid headers', () => {
  assert.equal(V1_WORST.length, 107);
  for (const [name, header, expected] of valid) {
    it(`parses ${name} and leaves what follows`, () => {
      const r = parseProxyHeader(Buffer.concat([header, NEXT]));
      assert.deepEqual(r, { header: expected, consumed: header.length });
    });

    it(`${name}: every split is incomplete until the last header byte`, () => {
      const all = Buffer.concat([header, NEXT]);
      for (let i = 0; i < header.length; i++) {
        assert.deepEqual(parseProxyHeader(all.subarray(0, i)), { incomplete: true }, `prefix of ${i} bytes`);
      }
      for (let i = header.length; i <= all.length; i++) {
        assert.deepEqual(parseProxyHeader(all.subarray(0, i)), { header: expected, consumed: header.length });
      }
    });
  }

  it('ignores the family of a LOCAL command, as the spec says', () => {
    assert.deepEqual(parseProxyHeader(v2(0x20, 0xff, hex('0102'))), { header: { command: 'LOCAL' }, consumed: 18 });
  });
});

describe('parseProxyHeader: malformed headers', () => {
  const bad: [string, Buffer, RegExp][] = [
    ['no header at all (a PostgreSQL startup packet)', NEXT, /missing PROXY protocol header/],
    ['an HTTP request', Buffer.from('GET / HTTP/1.1\r\n'), /missing/],
    ['lower-case proxy', Buffer.from('proxy TCP4 1.2.3.4 1.2.3.5 1 2\r\n'), /missing/],
    ['a v1 signature typo', Buffer.from('PROXX TCP4 1.2.3.4 1.2.3.5 1 2\r\n'), /bad PROXY protocol v1 signature/],
    ['a v1 line over 107 bytes', Buffer.from(`PROXY UNKNOWN ${'f'.repeat(120)}\r\n`), /longer than 107/],
    ['a v1 line ending in LF only', Buffer.from('PROXY TCP4 1.2.3.4 1.2.3.5 1 2\n'), /CRLF/],
    ['v1 TCP5', Buffer.from('PROXY TCP5 1.2.3.4 1.2.3.5 1 2\r\n'), /unsupported PROXY protocol v1 protocol "TCP5"/],
    ['v1 missing a port', Buffer.from('PROXY TCP4 1.2.3.4 1.2.3.5 1\r\n'), /malformed/],
    ['v1 double space', Buffer.from('PROXY TCP4  1.2.3.4 1.2.3.5 1 2\r\n'), /malformed/],
    ['v1 octet over 255', Buffer.from('PROXY TCP4 1.2.3.256 1.2.3.5 1 2\r\n'), /bad IPv4 source/],
    ['v1 octet with a leading zero', Buffer.from('PROXY TCP4 1.2.3.4 01.2.3.5 1 2\r\n'), /bad IPv4 destination/],
    ['v1 IPv6 under TCP4', Buffer.from('PROXY TCP4 ::1 1.2.3.5 1 2\r\n'), /bad IPv4 source/],
    ['v1 IPv4 under TCP6', Buffer.from('PROXY TCP6 1.2.3.4 ::1 1 2\r\n'), /bad IPv6 source/],
    ['v1 IPv6 with a zone', Buffer.from('PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n'), /bad IPv6 source/],
    ['v1 bad IPv6', Buffer.from('PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n'), /bad IPv6 source/],
    ['v1 port 65536', Buffer.from('PROXY TCP4 1.2.3.4 1.2.3.5 65536 2\r\n'), /bad port/],
    ['v1 negative port', Buffer.from('PROXY TCP4 1.2.3.4 1.2.3.5 -1 2\r\n'), /bad port/],
    ['v1 non-ASCII', Buffer.from('PROXY TCP4 1.2.3.4 1.2.3.5 1 2\u00e9\r\n'), /non-printable/],
    ['a v2 signature typo', Buffer.from([...SIG.slice(0, 7), 0x52, ...SIG.slice(8), 0x21, 0x11, 0, 12]), /bad PROXY protocol v2 signature/],
    ['v2 version 1', v2(0x11, 0x11, hex('7f000001 7f000001 0001 0002')), /unsupported PROXY protocol version 1/],
    ['v2 version 3', v2(0x31, 0x11, hex('7f000001 7f000001 0001 0002')), /unsupported PROXY protocol version 3/],
    ['v2 command 2', v2(0x22, 0x11, hex('7f000001 7f000001 0001 0002')), /unknown PROXY protocol v2 command 2/],
    ['v2 family 4', v2(0x21, 0x41, hex('7f000001 7f000001 0001 0002')), /address family\/protocol 0x41/],
    ['v2 transport 3', v2(0x21, 0x13, hex('7f000001 7f000001 0001 0002')), /address family\/protocol 0x13/],
    ['v2 IPv4 block too short', v2(0x21, 0x11, hex('7f000001 7f000001')), /address block too short/],
    ['v2 IPv6 block too short', v2(0x21, 0x21, Buffer.alloc(20)), /address block too short/],
    ['v2 AF_UNIX', v2(0x21, 0x31, Buffer.alloc(216)), /AF_UNIX/],
  ];
  for (const [name, buf, message] of bad) {
    it(`refuses ${name}`, () => {
      const r = parseProxyHeader(buf);
      assert.ok('error' in r, `expected an error, got ${JSON.stringify(r)}`);
      assert.match(r.error, message);
    });
  }

  it('refuses a v2 length over the bound as soon as the length is known', () => {
    const head = Buffer.from([...SIG, 0x21, 0x11, 0, 0]);
    head.writeUInt16BE(PROXY_V2_MAX_PAYLOAD + 1, 14);
    assert.match((parseProxyHeader(head) as { error: string }).error, /too long/);
    head.writeUInt16BE(PROXY_V2_MAX_PAYLOAD, 14);
    assert.deepEqual(parseProxyHeader(head), { incomplete: true });
  });

  it('refuses early: a wrong byte is an error without waiting for the rest', () => {
    assert.ok('error' in parseProxyHeader(Buffer.from([0x0d, 0x0a, 0x0d, 0x0b])));
    assert.ok('error' in parseProxyHeader(Buffer.from('PRO_')));
    assert.ok('error' in parseProxyHeader(Buffer.from([...SIG, 0x11])));
    assert.ok('error' in parseProxyHeader(Buffer.from([...SIG, 0x21, 0x51])));
    assert.ok('error' in parseProxyHeader(Buffer.from(`PROXY UNKNOWN ${'x'.repeat(93)}`)), '107 bytes and no CRLF');
    assert.deepEqual(parseProxyHeader(Buffer.from(`PROXY UNKNOWN ${'x'.repeat(92)}`)), { incomplete: true });
  });
});

describe('parseProxyHeader: arbitrary input (fuzz)', () => {
  it('never throws, and a prefix never disagrees with the whole', () => {
    const start = fc.constantFrom(Buffer.from('PROXY '), Buffer.from(SIG), Buffer.from([...SIG, 0x21]), Buffer.alloc(0));
    const tail = fc.uint8Array({ maxLength: 140 }).map((a) => Buffer.from(a));
    const text = fc
      .string({ unit: fc.constantFrom('TCP4', 'TCP6', 'UNKNOWN', ' ', '1', '.', ':', 'f', '\r\n', '\n', '65535', '::1', '10.0.0.1'), maxLength: 30 })
      .map((t) => Buffer.from(t));
    fc.assert(
      fc.property(start, fc.oneof(tail, text), (a, b) => {
        const buf = Buffer.concat([a, b]);
        const whole = parseProxyHeader(buf);
        if ('header' in whole) assert.ok(whole.consumed <= buf.length);
        for (let i = 0; i < buf.length; i++) {
          const part = parseProxyHeader(buf.subarray(0, i));
          if ('incomplete' in part) continue;
          if ('header' in whole && i < whole.consumed) assert.fail(`prefix of ${i} bytes gave ${JSON.stringify(part)}`);
          assert.deepEqual(part, whole, `prefix of ${i} bytes`);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('PROXY encoders and addresses', () => {
  it('encode the same bytes as the hand-built headers', () => {
    assert.deepEqual(encodeProxyHeaderV2(tcp4), V2_TCP4);
    assert.deepEqual(encodeProxyHeaderV2(tcp6), V2_TCP6);
    assert.deepEqual(encodeProxyHeaderV2({ command: 'LOCAL' }), V2_LOCAL);
    assert.deepEqual(encodeProxyHeaderV2({ command: 'UNKNOWN' }), V2_UNSPEC);
    assert.deepEqual(encodeProxyHeaderV1(tcp4), V1_TCP4);
    assert.deepEqual(encodeProxyHeaderV1({ command: 'UNKNOWN' }), V1_UNKNOWN);
    assert.throws(() => encodeProxyHeaderV1({ command: 'LOCAL' }), /no LOCAL/);
    const withTlv = encodeProxyHeaderV2(tcp4, { tlvs: [{ type: 0x04, value: Buffer.alloc(5) }], transport: 'DGRAM' });
    assert.deepEqual(parseProxyHeader(withTlv), { header: tcp4, consumed: withTlv.length });
  });

  it('round-trips any address through v1 and v2 (fuzz)', () => {
    const port = fc.integer({ min: 0, max: 65535 });
    const header = fc.oneof(
      fc.record({ a: fc.ipV4(), b: fc.ipV4(), p: port, q: port }).map(
        ({ a, b, p, q }): ProxyHeader => ({ command: 'PROXY', family: 'IPv4', source: { address: a, port: p }, destination: { address: b, port: q } }),
      ),
      fc.record({ a: fc.ipV6(), b: fc.ipV6(), p: port, q: port }).map(
        ({ a, b, p, q }): ProxyHeader => ({ command: 'PROXY', family: 'IPv6', source: { address: a, port: p }, destination: { address: b, port: q } }),
      ),
    );
    fc.assert(
      fc.property(header, (h) => {
        assert.equal(h.command, 'PROXY');
        if (h.command !== 'PROXY') return;
        const canon = (a: string) => (h.family === 'IPv6' ? formatIPv6(parseIPv6(a)!) : a);
        const expected = {
          ...h,
          source: { ...h.source, address: canon(h.source.address) },
          destination: { ...h.destination, address: canon(h.destination.address) },
        };
        for (const buf of [encodeProxyHeaderV1(h), encodeProxyHeaderV2(h)]) {
          assert.deepEqual(parseProxyHeader(buf), { header: expected, consumed: buf.length });
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('parses IPv6 as Node does and prints it as WHATWG URLs do (fuzz)', () => {
    fc.assert(
      fc.property(fc.ipV6(), (a) => {
        assert.equal(net.isIPv6(a), true);
        const bytes = parseIPv6(a);
        assert.ok(bytes, a);
        const text = formatIPv6(bytes);
        if (!text.startsWith('::ffff:') || !text.includes('.')) {
          assert.equal(`[${text}]`, new URL(`http://[${a}]/`).hostname);
        }
        assert.deepEqual(parseIPv6(text), bytes);
      }),
      { numRuns: 2000 },
    );
    for (const bad of ['', ':', ':::', '1::2::3', '1:2:3:4:5:6:7:8:9', '12345::', 'g::1', '::1.2.3', '1.2.3.4', '::1%eth0']) {
      assert.equal(parseIPv6(bad), null, bad);
    }
    assert.equal(formatIPv6(parseIPv6('0:0:1:0:0:0:0:1')!), '0:0:1::1', 'the longest run of zeros is compressed');
    assert.equal(formatIPv6(parseIPv6('1:0:1:0:1:0:1:0')!), '1:0:1:0:1:0:1:0', 'single zero groups are not');
    assert.equal(formatIPv6(parseIPv6('::ffff:1.2.3.4')!), '::ffff:1.2.3.4');
  });
});

describe('readProxyHeader (over a real socket)', () => {
  let server: net.Server;
  let port = 0;
  const accepted: ((s: net.Socket) => void)[] = [];
  before(async () => {
    server = net.createServer((s) => accepted.shift()?.(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as net.AddressInfo).port;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  /** Connects, writes `chunks` with pauses, and returns what readProxyHeader made of it. */
  async function read(chunks: Buffer[], opts: { end?: boolean; timeoutMs?: number } = {}) {
    const serverSide = new Promise<net.Socket>((r) => accepted.push(r));
    const client = net.connect(port, '127.0.0.1');
    client.setNoDelay(true);
    const s = await serverSide;
    const result = readProxyHeader(s, opts.timeoutMs ?? 2000).then(
      (v) => ({ ok: v }),
      (e: Error) => ({ err: e }),
    );
    for (const c of chunks) {
      client.write(c);
      await new Promise((r) => setTimeout(r, 5));
    }
    if (opts.end) client.end();
    const r = await result;
    client.destroy();
    s.destroy();
    return r;
  }

  it('reads a v2 header sent byte by byte and returns the bytes after it', async () => {
    const all = Buffer.concat([V2_TCP6, NEXT]);
    const chunks = [...all.subarray(0, V2_TCP6.length + 2)].map((b) => Buffer.from([b]));
    chunks.push(all.subarray(V2_TCP6.length + 2));
    const r = await read(chunks);
    assert.ok('ok' in r, String('err' in r && r.err));
    assert.deepEqual(r.ok.header, tcp6);
    assert.ok(NEXT.subarray(0, r.ok.rest.length).equals(r.ok.rest), 'rest is the start of what followed');
  });

  it('reads a v1 header with the client data in the same packet', async () => {
    const r = await read([Buffer.concat([V1_TCP4, NEXT])]);
    assert.ok('ok' in r);
    assert.deepEqual(r.ok, { header: tcp4, rest: NEXT });
  });

  it('rejects a malformed header', async () => {
    const r = await read([NEXT]);
    assert.ok('err' in r);
    assert.match(r.err.message, /missing PROXY protocol header/);
  });

  it('rejects EOF before a whole header', async () => {
    const r = await read([V2_TCP4.subarray(0, 10)], { end: true });
    assert.ok('err' in r);
    assert.match(r.err.message, /closed before the PROXY protocol header/);
  });

  it('rejects after the timeout', async () => {
    const started = Date.now();
    const r = await read([Buffer.from('PROXY ')], { timeoutMs: 50 });
    assert.ok('err' in r);
    assert.match(r.err.message, /no PROXY protocol header within 50 ms/);
    assert.ok(Date.now() - started < 1000);
  });

  it('leaves the socket paused with nothing lost', async () => {
    const serverSide = new Promise<net.Socket>((r) => accepted.push(r));
    const client = net.connect(port, '127.0.0.1');
    const s = await serverSide;
    client.write(V1_UNKNOWN);
    const { header, rest } = await readProxyHeader(s, 2000);
    assert.deepEqual(header, { command: 'UNKNOWN' });
    client.write('hello');
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(s.isPaused(), true);
    s.unshift(rest);
    const data = new Promise<Buffer>((resolve) => s.once('data', resolve));
    s.resume();
    const got = await data;
    assert.equal(got.toString(), 'hello');
    client.destroy();
    s.destroy();
  });
});
