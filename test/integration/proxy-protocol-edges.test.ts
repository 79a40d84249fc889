import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import pg from 'pg';
import { encodeStartupMessage } from '../../src/protocol/index.js';
import { whichExecutable } from '../helpers/pg-cluster.js';
import { RawClient } from '../helpers/raw-client.js';
import { metricValue } from '../helpers/scrape.js';
import { proxyShim } from '../helpers/proxy-shim.js';
import { freePort } from '../helpers/ports.js';
import { proxyProtocolFixture, REMOTE_ADDR, u16, v2, V2_SIG } from '../helpers/proxy-protocol-setup.js';

/* --proxyProtocol end to end (see proxy-protocol.test.ts): headers that are malformed, missing or too slow, throttling by the header's address, IPv6 addresses in logs, and a real HAProxy in front. */

describe('PROXY protocol: bad headers, throttling, IPv6 logs, HAProxy (a real pgward process)', () => {
  const fx = proxyProtocolFixture();
  const { start, remoteAddrVia, sessionClients } = fx;

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
      const c = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'alice', password: fx.token, database: 'postgres', connectionTimeoutMillis: 5_000 });
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
    const cfgPath = join(fx.dir, 'haproxy.cfg');
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
      const c = new pg.Client({ host: '::1', port: p3, user: 'alice', password: fx.token, database: 'postgres', connectionTimeoutMillis: 5_000 });
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
