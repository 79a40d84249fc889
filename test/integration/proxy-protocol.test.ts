import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { encodeStartupMessage, fe } from '../../src/protocol/index.js';
import { encodeProxyHeaderV1, encodeProxyHeaderV2 } from '../../src/server/proxy-protocol.js';
import { RawClient } from '../helpers/raw-client.js';
import { until } from '../helpers/wait.js';
import { proxyShim, type ShimMode } from '../helpers/proxy-shim.js';
import { ipv4, proxyProtocolFixture, REMOTE_ADDR, u16, v2 } from '../helpers/proxy-protocol-setup.js';

/*
 * --proxyProtocol end to end: a real `pgward start` process with `remote-addr` in its pipeline,
 * real PostgreSQL behind it, and PROXY protocol v1/v2 headers written in front of a real client.
 *
 * A "shim" stands in for the load balancer: a local TCP server that, for every connection a
 * client (node-postgres) makes to it, connects to pgward, writes the header the test chose and
 * then relays both ways. The headers the checks rely on are built byte by byte from
 * https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt, not with pgward's own encoder.
 */

describe('PROXY protocol (a real pgward process with --proxyProtocol and remote-addr)', () => {
  const fx = proxyProtocolFixture();
  const { start, remoteAddrVia, sessionClients } = fx;

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
    raw.write(fe.password(fx.token).raw);
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
    const c = new pg.Client({ host: '127.0.0.1', port: shim.port, user: 'alice', password: fx.token, database: 'postgres', options: `-c ${REMOTE_ADDR}=6.6.6.6:3` } as pg.ClientConfig);
    c.on('error', () => {});
    await c.connect();
    try {
      const r = await c.query<{ a: string }>(`select current_setting('${REMOTE_ADDR}') as a`);
      assert.equal(r.rows[0]!.a, '192.0.2.201:6666');
    } finally {
      await c.end().catch(() => {});
    }
  });

});
