import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import pg from 'pg';
import { backendMessage, encodeStartupMessage, fe, Framer, type BackendMessage } from '../../src/protocol/index.js';
import { encodeProxyHeaderV1, encodeProxyHeaderV2 } from '../../src/server/proxy-protocol.js';
import { PgCluster, whichExecutable } from '../helpers/pg-cluster.js';
import { startPgwardProcess, type PgwardProcess } from '../helpers/pgward-process.js';
import { RawClient } from '../helpers/raw-client.js';
import { metricValue } from '../helpers/scrape.js';
import { until } from '../helpers/wait.js';
import { proxyShim, type ShimMode } from '../helpers/proxy-shim.js';
import { freePort } from '../helpers/ports.js';

/*
 * --proxyProtocol end to end: a real `pgward start` process with `remote-addr` in its pipeline,
 * real PostgreSQL behind it, and PROXY protocol v1/v2 headers written in front of a real client.
 *
 * A "shim" stands in for the load balancer: a local TCP server that, for every connection a
 * client (node-postgres) makes to it, connects to pgward, writes the header the test chose and
 * then relays both ways. The headers the checks rely on are built byte by byte from
 * https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt, not with pgward's own encoder.
 */

const REMOTE_ADDR = 'pgward.remote_addr';
/** The v2 signature, section 2.2: \r\n\r\n\0\r\nQUIT\n. */
const V2_SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

/** A v2 header from its parts: version/command byte, family/transport byte, address block. */
function v2(verCmd: number, famProto: number, block: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([V2_SIG, Buffer.from([verCmd, famProto]), u16(block.length), block]);
}

const ipv4 = (a: string) => Buffer.from(a.split('.').map(Number));



describe('PROXY protocol (a real pgward process with --proxyProtocol and remote-addr)', () => {
  let cluster: PgCluster;
  let dir: string;
  let key: Awaited<ReturnType<typeof generateKeyPair>>;
  let token: string;
  let baseArgs: string[];

  before(async () => {
    cluster = await PgCluster.start({ hba: ['host all all 127.0.0.1/32 scram-sha-256'], users: [{ name: 'alice', password: 'alice-pw' }] });
    dir = await mkdtemp(join(tmpdir(), 'pgward-proxyproto-'));
    key = await generateKeyPair('EdDSA', { extractable: true });
    await writeFile(join(dir, 'key.pem'), await exportSPKI(key.publicKey));
    await writeFile(join(dir, 'backends.json'), JSON.stringify({ alice: `${cluster.url('alice', 'alice-pw')}?sslmode=disable` }));
    await writeFile(join(dir, 'pgward.yaml'), `pipeline:\n  - remote-addr: { param: ${REMOTE_ADDR} }\n  - drain-gate\n`);
    token = await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'EdDSA' }).setIssuedAt().setExpirationTime('30m').sign(key.privateKey);
    baseArgs = [
      '--insecure', '--proxyProtocol', '--config', join(dir, 'pgward.yaml'),
      '--backends', join(dir, 'backends.json'), '--signingKeys', join(dir, 'key.pem'),
    ];
  });

  after(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const start = (extra: string[] = []): Promise<PgwardProcess> => startPgwardProcess([...baseArgs, ...extra]);

  /** Logs in as alice through `port` (a shim or HAProxy); returns pgward.remote_addr and the client's local port. */
  async function remoteAddrVia(port: number, password = token): Promise<{ addr: string; localPort: number }> {
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'alice', password, database: 'postgres', connectionTimeoutMillis: 5_000 });
    c.on('error', () => {});
    try {
      await c.connect();
      const localPort = (c as unknown as { connection: { stream: net.Socket } }).connection.stream.localPort!;
      const r = await c.query<{ a: string }>(`select current_setting('${REMOTE_ADDR}') as a`);
      return { addr: r.rows[0]!.a, localPort };
    } finally {
      await c.end().catch(() => {});
    }
  }

  /** The `client` field of the 'session started' events logged since `mark`. */
  function sessionClients(proxy: PgwardProcess, mark: number): unknown[] {
    return proxy.events.slice(mark).filter((e) => e.msg === 'session started').map((e) => e.client);
  }

  it('v1 TCP4 and TCP6 headers: the source address is what current_setting() returns and what the logs show', async () => {
    await using proxy = await start();
    const cases: { what: string; header: Buffer; addr: string; logged: string[] }[] = [
      {
        what: 'TCP4',
        header: Buffer.from('PROXY TCP4 203.0.113.7 127.0.0.1 40001 13013\r\n', 'latin1'),
        addr: '203.0.113.7:40001',
        logged: ['203.0.113.7:40001'],
      },
      {
        what: 'TCP6 (non-canonical spelling)',
        header: Buffer.from('PROXY TCP6 2001:DB8:0:0:0:0:0:17 ::1 40002 13013\r\n', 'latin1'),
        addr: '[2001:db8::17]:40002',
        logged: ['[2001:db8::17]:40002'],
      },
      {
        what: 'TCP6 IPv4-mapped',
        header: Buffer.from('PROXY TCP6 ::ffff:198.51.100.9 ::1 40003 13013\r\n', 'latin1'),
        addr: '198.51.100.9:40003',
        logged: ['[::ffff:198.51.100.9]:40003'],
      },
    ];
    for (const c of cases) {
      await using shim = await proxyShim(proxy.port, () => c.header);
      const mark = proxy.events.length;
      const { addr } = await remoteAddrVia(shim.port);
      assert.equal(addr, c.addr, `${c.what}: current_setting('${REMOTE_ADDR}')`);
      const clients = sessionClients(proxy, mark);
      assert.equal(clients.length, 1, `${c.what}: one session started`);
      assert.ok(c.logged.includes(String(clients[0])), `${c.what}: logged client ${String(clients[0])}, expected one of ${c.logged.join(', ')}`);
      assert.ok(!String(clients[0]).startsWith('127.0.0.1:'), `${c.what}: the real peer address is not logged as the client`);
    }
    // The same through pgward's own encoder, for a v1 line of the longest address form.
    const line = encodeProxyHeaderV1({
      command: 'PROXY', family: 'IPv6',
      source: { address: 'fd00:1:2:3:4:5:6:7', port: 65535 }, destination: { address: '::1', port: 13013 },
    });
    await using shim = await proxyShim(proxy.port, () => line);
    assert.equal((await remoteAddrVia(shim.port)).addr, '[fd00:1:2:3:4:5:6:7]:65535');
  });

  it('v2 TCP4 (built by hand, with TLVs) and TCP6 (encoder, with a TLV): the source address reaches PostgreSQL and the logs', async () => {
    await using proxy = await start();
    const tlvs = Buffer.concat([
      Buffer.from([0x05]), u16(6), Buffer.from('abc123'), // PP2_TYPE_UNIQUE_ID
      Buffer.from([0x04]), u16(3), Buffer.alloc(3), // PP2_TYPE_NOOP
    ]);
    const tcp4 = v2(0x21, 0x11, Buffer.concat([ipv4('192.0.2.44'), ipv4('127.0.0.1'), u16(40123), u16(13013), tlvs]));
    // Spot-check the hand-made bytes against the spec's fixed layout.
    assert.equal(tcp4.length, 16 + 12 + tlvs.length);
    assert.equal(tcp4.readUInt16BE(14), 12 + tlvs.length);
    const tcp6 = encodeProxyHeaderV2(
      { command: 'PROXY', family: 'IPv6', source: { address: '2001:db8:abcd::42', port: 51515 }, destination: { address: '2001:db8::1', port: 5432 } },
      { tlvs: [{ type: 0x01, value: Buffer.from('postgresql') }] },
    );
    const cases = [
      { what: 'v2 TCP4', header: tcp4, addr: '192.0.2.44:40123', logged: ['192.0.2.44:40123'] },
      { what: 'v2 TCP6', header: tcp6, addr: '[2001:db8:abcd::42]:51515', logged: ['[2001:db8:abcd::42]:51515'] },
    ];
    for (const c of cases) {
      await using shim = await proxyShim(proxy.port, () => c.header);
      const mark = proxy.events.length;
      assert.equal((await remoteAddrVia(shim.port)).addr, c.addr, c.what);
      const clients = sessionClients(proxy, mark);
      assert.equal(clients.length, 1, `${c.what}: one session started`);
      assert.ok(c.logged.includes(String(clients[0])), `${c.what}: logged client ${String(clients[0])}`);
    }
  });

  it('v1 UNKNOWN, v2 LOCAL and v2 AF_UNSPEC: the real socket address is used', async () => {
    await using proxy = await start();
    const longestUnknown = `PROXY UNKNOWN ${'ffff:'.repeat(7)}ffff ${'ffff:'.repeat(7)}ffff 65535 65535\r\n`;
    assert.equal(longestUnknown.length, 107, 'the spec\'s worst-case v1 line');
    const cases: { what: string; header: Buffer }[] = [
      { what: 'v1 UNKNOWN', header: Buffer.from('PROXY UNKNOWN\r\n', 'latin1') },
      { what: 'v1 UNKNOWN with ignored addresses (107 bytes)', header: Buffer.from(longestUnknown, 'latin1') },
      // LOCAL: a health check from the balancer itself; its addresses, if any, are ignored.
      { what: 'v2 LOCAL', header: v2(0x20, 0x00) },
      { what: 'v2 LOCAL with an address block', header: v2(0x20, 0x11, Buffer.concat([ipv4('192.0.2.99'), ipv4('127.0.0.1'), u16(1), u16(2)])) },
      { what: 'v2 PROXY AF_UNSPEC', header: v2(0x21, 0x00) },
    ];
    for (const c of cases) {
      await using shim = await proxyShim(proxy.port, () => c.header);
      const mark = proxy.events.length;
      const { addr } = await remoteAddrVia(shim.port);
      // pgward's peer is the shim's outgoing socket.
      const real = `127.0.0.1:${shim.peerPorts[0]}`;
      assert.equal(addr, real, `${c.what}: current_setting() holds the real peer address`);
      assert.deepEqual(sessionClients(proxy, mark), [real], `${c.what}: logged client`);
    }
  });

  it('the header may arrive a byte at a time, or in one packet with the startup message', async () => {
    await using proxy = await start();
    const cases: { what: string; header: Buffer; mode: ShimMode; addr: string }[] = [
      { what: 'v1 dribbled', header: Buffer.from('PROXY TCP4 198.51.100.1 127.0.0.1 1111 13013\r\n', 'latin1'), mode: 'dribbled', addr: '198.51.100.1:1111' },
      { what: 'v1 coalesced', header: Buffer.from('PROXY TCP4 198.51.100.2 127.0.0.1 2222 13013\r\n', 'latin1'), mode: 'coalesced', addr: '198.51.100.2:2222' },
      { what: 'v2 dribbled', header: v2(0x21, 0x11, Buffer.concat([ipv4('198.51.100.3'), ipv4('127.0.0.1'), u16(3333), u16(13013)])), mode: 'dribbled', addr: '198.51.100.3:3333' },
      { what: 'v2 coalesced', header: v2(0x21, 0x11, Buffer.concat([ipv4('198.51.100.4'), ipv4('127.0.0.1'), u16(4444), u16(13013)])), mode: 'coalesced', addr: '198.51.100.4:4444' },
    ];
    for (const c of cases) {
      await using shim = await proxyShim(proxy.port, () => c.header, c.mode);
      assert.equal((await remoteAddrVia(shim.port)).addr, c.addr, c.what);
    }
  });

  it('a client cannot replace the header address with its own startup parameter or options', async () => {
    await using proxy = await start();
    // Header, startup message (with a spoofed parameter) and nothing else in one write.
    await using raw = await RawClient.connect(proxy.port);
    raw.write(Buffer.concat([
      Buffer.from('PROXY TCP4 192.0.2.200 127.0.0.1 5555 13013\r\n', 'latin1'),
      encodeStartupMessage([['user', 'alice'], ['database', 'postgres'], [REMOTE_ADDR, '6.6.6.6:1'], ['PGWARD.Remote_Addr', '6.6.6.6:2']]),
    ]));
    await until(() => raw.messages.some((m) => m.type === 'Authentication' || m.type === 'ErrorResponse'), 10_000, 'password request');
    raw.write(fe.password(token).raw);
    await until(() => raw.messages.some((m) => m.type === 'ReadyForQuery' || m.type === 'ErrorResponse'), 10_000, 'login');
    const mark = raw.messages.length;
    raw.write(fe.query(`select current_setting('${REMOTE_ADDR}')`).raw);
    await until(() => raw.messages.slice(mark).some((m) => m.type === 'ReadyForQuery'), 10_000, 'query answer');
    assert.deepEqual(raw.messages.filter((m) => m.type === 'ErrorResponse').map((m) => m.body()), []);
    const row = raw.messages.slice(mark).find((m) => m.type === 'DataRow');
    assert.ok(row?.type === 'DataRow');
    assert.equal(row.body().values[0]?.toString(), '192.0.2.200:5555');

    // Through options (-c name=value), with a real client.
    await using shim = await proxyShim(proxy.port, () => Buffer.from('PROXY TCP4 192.0.2.201 127.0.0.1 6666 13013\r\n', 'latin1'));
    const c = new pg.Client({ host: '127.0.0.1', port: shim.port, user: 'alice', password: token, database: 'postgres', options: `-c ${REMOTE_ADDR}=6.6.6.6:3` } as pg.ClientConfig);
    c.on('error', () => {});
    await c.connect();
    try {
      const r = await c.query<{ a: string }>(`select current_setting('${REMOTE_ADDR}') as a`);
      assert.equal(r.rows[0]!.a, '192.0.2.201:6666');
    } finally {
      await c.end().catch(() => {});
    }
  });

  it('a malformed, missing or too slow header closes the connection; pgward keeps serving', async () => {
    await using proxy = await start(['--metricsAddr', '127.0.0.1:0', '--authTimeout', '2s']);
    const metricsUrl = String((await proxy.waitFor('pgward listening')).metrics);
    const scrape = async () => (await fetch(metricsUrl)).text();
    const refusedBefore = metricValue(await scrape(), 'pgward_connections_total', { result: 'refused' });

    const startup = encodeStartupMessage([['user', 'alice'], ['database', 'postgres']]);
    const sslRequest = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    const bad: { what: string; bytes: Buffer; reason: RegExp }[] = [
      { what: 'no header: a startup message', bytes: startup, reason: /missing PROXY protocol header/ },
      { what: 'no header: an SSLRequest', bytes: sslRequest, reason: /missing PROXY protocol header/ },
      { what: 'no header: HTTP', bytes: Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), reason: /missing PROXY protocol header/ },
      { what: 'v1 bad IPv4 address', bytes: Buffer.from('PROXY TCP4 256.1.1.1 127.0.0.1 1 2\r\n'), reason: /bad IPv4 source address/ },
      { what: 'v1 port out of range', bytes: Buffer.from('PROXY TCP4 192.0.2.1 127.0.0.1 70000 5432\r\n'), reason: /bad port/ },
      { what: 'v1 IPv6 address under TCP4', bytes: Buffer.from('PROXY TCP4 2001:db8::1 127.0.0.1 1 2\r\n'), reason: /bad IPv4 source address/ },
      { what: 'v1 unknown protocol', bytes: Buffer.from('PROXY UDP4 192.0.2.1 127.0.0.1 1 2\r\n'), reason: /unsupported PROXY protocol v1 protocol "UDP4"/ },
      { what: 'v1 missing field', bytes: Buffer.from('PROXY TCP4 192.0.2.1 127.0.0.1 1\r\n'), reason: /malformed PROXY protocol v1 header/ },
      { what: 'v1 LF without CR', bytes: Buffer.from('PROXY TCP4 192.0.2.1 127.0.0.1 1 2\n'), reason: /does not end with CRLF/ },
      { what: 'v1 longer than 107 bytes', bytes: Buffer.from(`PROXY UNKNOWN ${'x'.repeat(120)}\r\n`), reason: /longer than 107 bytes/ },
      { what: 'v1 lower-case signature', bytes: Buffer.from('proxy TCP4 192.0.2.1 127.0.0.1 1 2\r\n'), reason: /missing PROXY protocol header|signature/ },
      { what: 'v2 bad signature', bytes: Buffer.concat([Buffer.from('\r\n\r\n\0\r\nQUIX\n'), Buffer.from([0x21, 0x11]), u16(0)]), reason: /bad PROXY protocol v2 signature/ },
      { what: 'v2 version 1 in the version nibble', bytes: v2(0x11, 0x11, Buffer.alloc(12)), reason: /unsupported PROXY protocol version 1/ },
      { what: 'v2 unknown command', bytes: v2(0x2f, 0x11, Buffer.alloc(12)), reason: /unknown PROXY protocol v2 command 15/ },
      { what: 'v2 TCP4 address block too short', bytes: v2(0x21, 0x11, Buffer.alloc(8)), reason: /address block too short/ },
      { what: 'v2 length over the limit', bytes: Buffer.concat([V2_SIG, Buffer.from([0x21, 0x11]), u16(60_000)]), reason: /too long/ },
    ];
    let refusedConnections = 0;
    for (const c of bad) {
      const mark = proxy.events.length;
      await using raw = await RawClient.connect(proxy.port);
      raw.write(c.bytes);
      await raw.closedWithin(5_000, c.what);
      refusedConnections++;
      assert.ok(!raw.messages.some((m) => m.type === 'Authentication' || m.type === 'ReadyForQuery'), `${c.what}: no login was started`);
      const ev = await proxy.waitFor('connection closed: no valid PROXY protocol header', 5_000, mark);
      assert.match(String(ev.reason), c.reason, c.what);
      assert.match(String(ev.client), /^127\.0\.0\.1:\d+$/, `${c.what}: logged with the real peer`);
    }

    // A header that never comes: closed once --authTimeout has passed.
    {
      const mark = proxy.events.length;
      await using raw = await RawClient.connect(proxy.port);
      raw.write(Buffer.from('PROXY TCP4 192.0.2.1')); // and then nothing
      await raw.closedWithin(10_000, 'incomplete header');
      refusedConnections++;
      assert.equal(raw.bytes, 0, 'nothing is answered to a connection without a header');
      const ev = await proxy.waitFor('connection closed: no valid PROXY protocol header', 5_000, mark);
      assert.match(String(ev.reason), /no PROXY protocol header within 2000 ms/);
    }

    // A real client straight to pgward (no header) is refused too.
    {
      const mark = proxy.events.length;
      const c = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'alice', password: token, database: 'postgres', connectionTimeoutMillis: 5_000 });
      c.on('error', () => {});
      await assert.rejects(c.connect(), 'a client without a PROXY header cannot log in');
      refusedConnections++;
      await c.end().catch(() => {});
      const ev = await proxy.waitFor('connection closed: no valid PROXY protocol header', 5_000, mark);
      assert.match(String(ev.reason), /missing PROXY protocol header/);
    }

    // pgward is still up and serving properly framed connections.
    assert.equal(proxy.child.exitCode, null, 'pgward still runs');
    await using shim = await proxyShim(proxy.port, () => Buffer.from('PROXY TCP4 192.0.2.77 127.0.0.1 7777 13013\r\n'));
    assert.equal((await remoteAddrVia(shim.port)).addr, '192.0.2.77:7777');
    const m = await scrape();
    assert.equal(metricValue(m, 'pgward_connections_total', { result: 'refused' }) - refusedBefore, refusedConnections, 'each refused connection counted once');
    assert.equal(proxy.events.filter((e) => e.msg === 'session started').length, 1, 'only the good connection started a session');
  });

  it('the address from the header is the one throttled after failed logins', async () => {
    await using proxy = await start(['--throttleAfter', '1']);
    const header = (addr: string, port: number) => () => Buffer.from(`PROXY TCP4 ${addr} 127.0.0.1 ${port} 13013\r\n`, 'latin1');
    const delayedClients = () => proxy.events.filter((e) => e.msg === 'login delayed after repeated failures').map((e) => [e.client, e.delay_ms]);

    // One failure from 198.51.100.10 (every connection physically comes from 127.0.0.1).
    {
      const mark = proxy.events.length;
      await using shim = await proxyShim(proxy.port, header('198.51.100.10', 50001));
      await assert.rejects(remoteAddrVia(shim.port, 'not-a-token'), (err: Error & { code?: string }) => {
        assert.equal(err.code, '28P01');
        return true;
      });
      const ev = await proxy.waitFor('authentication failed', 5_000, mark);
      assert.equal(ev.client, '198.51.100.10:50001');
      assert.equal(ev.sqlstate, '28P01');
    }
    // Another address, and the real peer address (v1 UNKNOWN), log in without any delay.
    {
      await using shim = await proxyShim(proxy.port, header('198.51.100.20', 50002));
      assert.equal((await remoteAddrVia(shim.port)).addr, '198.51.100.20:50002');
      await using unknown = await proxyShim(proxy.port, () => Buffer.from('PROXY UNKNOWN\r\n'));
      assert.match((await remoteAddrVia(unknown.port)).addr, /^127\.0\.0\.1:\d+$/);
      assert.deepEqual(delayedClients(), [], 'no attempt delayed yet');
    }
    // The failing address is delayed, whatever source port it uses now; the login then succeeds.
    {
      await using shim = await proxyShim(proxy.port, header('198.51.100.10', 50003));
      assert.equal((await remoteAddrVia(shim.port)).addr, '198.51.100.10:50003');
      assert.deepEqual(delayedClients(), [['198.51.100.10:50003', 1000]]);
    }
  });

  it('IPv6 client addresses in log events are written so host and port can be told apart', async () => {
    await using proxy = await start();
    await using shim = await proxyShim(proxy.port, () => Buffer.from('PROXY TCP6 2001:db8::17 ::1 40002 13013\r\n', 'latin1'));
    const mark = proxy.events.length;
    await remoteAddrVia(shim.port);
    assert.deepEqual(sessionClients(proxy, mark), ['[2001:db8::17]:40002']);
  });

  it('behind a real HAProxy with send-proxy and send-proxy-v2, the client\'s own address reaches PostgreSQL', async (t) => {
    // Debian puts it in /usr/sbin, which a non-root PATH may lack.
    const haproxyBin = (await whichExecutable('haproxy')) ?? (existsSync('/usr/sbin/haproxy') ? '/usr/sbin/haproxy' : undefined);
    if (!haproxyBin) {
      t.skip('haproxy not installed');
      return;
    }
    await using proxy = await start();
    const v6 = await new Promise<boolean>((resolve) => {
      const s = net.createServer().once('error', () => resolve(false));
      s.listen(0, '::1', () => s.close(() => resolve(true)));
    });
    const [p1, p2, p3] = [await freePort(), await freePort(), await freePort()];
    const cfg = [
      'global',
      '    maxconn 100',
      'defaults',
      '    mode tcp',
      '    timeout connect 5s',
      '    timeout client 30s',
      '    timeout server 30s',
      'frontend v1',
      `    bind 127.0.0.1:${p1}`,
      '    default_backend pgward_v1',
      'backend pgward_v1',
      `    server p 127.0.0.1:${proxy.port} send-proxy`,
      'frontend v2',
      `    bind 127.0.0.1:${p2}`,
      '    default_backend pgward_v2',
      'backend pgward_v2',
      `    server p 127.0.0.1:${proxy.port} send-proxy-v2`,
      ...(v6 ? ['frontend v2_ipv6', `    bind [::1]:${p3}`, '    default_backend pgward_v2'] : []),
      '',
    ].join('\n');
    const cfgPath = join(dir, 'haproxy.cfg');
    await writeFile(cfgPath, cfg);
    const check = spawn(haproxyBin, ['-c', '-f', cfgPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    let checkOut = '';
    check.stdout.on('data', (d) => (checkOut += d));
    check.stderr.on('data', (d) => (checkOut += d));
    assert.equal(await new Promise((r) => check.once('exit', r)), 0, `haproxy -c: ${checkOut}`);

    const child = spawn(haproxyBin, ['-db', '-f', cfgPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const exited = new Promise((r) => child.once('exit', r));
    await using _haproxy = {
      async [Symbol.asyncDispose]() {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGKILL');
          await exited;
        }
      },
    };
    // Wait until HAProxy accepts (its listeners bind in a moment).
    const deadline = Date.now() + 10_000;
    for (;;) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port: p2 }, () => (s.destroy(), resolve(true)));
        s.once('error', () => resolve(false));
      });
      if (ok) break;
      assert.equal(child.exitCode, null, `haproxy exited: ${out}`);
      assert.ok(Date.now() < deadline, `haproxy not listening: ${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }

    for (const [what, port] of [['send-proxy (v1)', p1], ['send-proxy-v2', p2]] as const) {
      const mark = proxy.events.length;
      const { addr, localPort } = await remoteAddrVia(port);
      // The client's own socket, not HAProxy's connection to pgward.
      assert.equal(addr, `127.0.0.1:${localPort}`, what);
      assert.deepEqual(sessionClients(proxy, mark), [`127.0.0.1:${localPort}`], `${what}: logged client`);
    }
    if (v6) {
      const c = new pg.Client({ host: '::1', port: p3, user: 'alice', password: token, database: 'postgres', connectionTimeoutMillis: 5_000 });
      c.on('error', () => {});
      await c.connect();
      try {
        const localPort = (c as unknown as { connection: { stream: net.Socket } }).connection.stream.localPort!;
        const r = await c.query<{ a: string }>(`select current_setting('${REMOTE_ADDR}') as a`);
        assert.equal(r.rows[0]!.a, `[::1]:${localPort}`, 'send-proxy-v2 from an IPv6 client');
      } finally {
        await c.end().catch(() => {});
      }
    } else {
      t.diagnostic('no IPv6 loopback: the IPv6 frontend was left out');
    }
    // The readiness probes above (relayed by HAProxy and closed at once) did not hurt pgward.
    assert.equal(proxy.child.exitCode, null);
  });
});
