import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BUILTIN_MIDDLEWARE } from '../../src/middleware/index.js';
import { formatHostPort, remoteAddr } from '../../src/middleware/remote-addr.js';
import type { Middleware } from '../../src/pipeline/middleware.js';
import { Session } from '../../src/pipeline/session.js';
import { silentLogger } from '../../src/telemetry/log.js';

/** Runs the startup hook as the connection does: on the params about to go to the backend. */
async function startupParams(mw: Middleware, address: string, port: number, params: [string, string][] = []) {
  const session = new Session({ client: { address, port, tls: false }, clientParams: new Map(params), log: silentLogger });
  const backendParams = new Map<string, string>([['user', 'app'], ['database', 'app'], ...params]);
  await mw.beforeBackendStartup?.({ params: backendParams, ctx: session });
  return backendParams;
}

describe('remote-addr', () => {
  it('sets crdb:remote_addr to host:port by default', async () => {
    const mw = remoteAddr();
    assert.equal(mw.name, 'remote-addr');
    const p = await startupParams(mw, '203.0.113.7', 51234);
    assert.equal(p.get('crdb:remote_addr'), '203.0.113.7:51234');
    assert.equal(p.get('user'), 'app', 'other parameters are untouched');
  });

  it('brackets IPv6 hosts, as CockroachDB (net.SplitHostPort) expects', async () => {
    const p = await startupParams(remoteAddr(), '2001:db8::1', 5432);
    assert.equal(p.get('crdb:remote_addr'), '[2001:db8::1]:5432');
  });

  it('reports IPv4-mapped IPv6 as IPv4 and drops zone ids', () => {
    assert.equal(formatHostPort('::ffff:10.0.0.1', 1), '10.0.0.1:1');
    assert.equal(formatHostPort('::FFFF:192.168.1.2', 2), '192.168.1.2:2');
    assert.equal(formatHostPort('fe80::1%eth0', 3), '[fe80::1]:3');
    assert.equal(formatHostPort('[::1]', 4), '[::1]:4');
  });

  it('overwrites what the client sent, in any letter case', async () => {
    const p = await startupParams(remoteAddr(), '198.51.100.1', 4000, [
      ['crdb:remote_addr', '127.0.0.1:1'],
      ['CRDB:Remote_Addr', '10.0.0.1:2'],
    ]);
    assert.deepEqual(
      [...p].filter(([k]) => k.toLowerCase() === 'crdb:remote_addr'),
      [['crdb:remote_addr', '198.51.100.1:4000']],
    );
  });

  it('sets nothing (and keeps nothing the client sent) when the address is unknown', async () => {
    const p = await startupParams(remoteAddr(), '', 0, [['crdb:remote_addr', '127.0.0.1:1']]);
    assert.equal(p.has('crdb:remote_addr'), false);
  });

  it('uses a custom parameter name such as pgward.remote_addr for PostgreSQL', async () => {
    const mw = remoteAddr({ param: 'pgward.remote_addr' });
    const p = await startupParams(mw, '192.0.2.9', 6000, [['pgward.remote_addr', 'spoofed']]);
    assert.equal(p.get('pgward.remote_addr'), '192.0.2.9:6000');
    assert.equal(p.has('crdb:remote_addr'), false);
  });

  it('refuses parameter names that cannot carry the address', () => {
    for (const bad of ['', 'user', 'DATABASE', 'options', 'has space', 'a=b', '_pq_.x', 'nul\0']) {
      assert.throws(() => remoteAddr({ param: bad }), /remote-addr: option "param"/, bad);
    }
  });

  it('BUILTIN_MIDDLEWARE["remote-addr"] validates its options', async () => {
    const factory = BUILTIN_MIDDLEWARE['remote-addr']!;
    assert.equal(factory(undefined).name, 'remote-addr');
    const mw = factory({ param: 'pgward.remote_addr' });
    assert.equal((await startupParams(mw, '192.0.2.1', 1)).get('pgward.remote_addr'), '192.0.2.1:1');
    assert.throws(
      () => factory({ param: 42, header: 'x' }),
      (e: Error) =>
        /^remote-addr: /.test(e.message) &&
        /option "param" must be a string, not number 42/.test(e.message) &&
        /unknown option "header" \(known: param\)/.test(e.message),
    );
    assert.throws(() => factory({ param: 'user' }), /remote-addr: option "param" "user" is a connection parameter/);
    assert.throws(() => factory(true), /remote-addr: options must be a mapping/);
  });
});
