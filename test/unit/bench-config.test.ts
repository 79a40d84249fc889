import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { familyTargets, FAMILIES, longLivedTargets, maxConnectionsFor, readConfig, runSeconds, TARGETS } from '../../bench/config.js';
import { pgbouncerIni } from '../../bench/pgbouncer.js';

describe('bench config (BENCH_* variables)', () => {
  it('measures every family and target by default, with today\'s select cells', () => {
    const config = readConfig({});
    assert.deepEqual(config.families, [...FAMILIES]);
    assert.deepEqual(config.targets, [...TARGETS]);
    assert.deepEqual(config.clients, { select: [1, 8, 32], tls: [8, 32], querylog: [8, 32] });
    assert.deepEqual(config.scripts.map((s) => s.name), ['select-only', 'tpcb-like']);
    assert.equal(config.seconds, 15);
    assert.equal(config.churnClients, 4);
    assert.equal(config.idleSessions, 1000);
    assert.equal(config.rounds, 1);
    assert.equal(config.maxSteal, undefined);
    assert.equal(config.proxySession, 'own');
    assert.equal(config.mirror, true);
  });

  it('BENCH_CELLS chooses families, measured in the canonical order whatever order they are given in', () => {
    assert.deepEqual(readConfig({ BENCH_CELLS: 'memory, churn' }).families, ['churn', 'memory']);
    assert.deepEqual(readConfig({ BENCH_CELLS: 'select,tls,querylog' }).families, ['select', 'tls', 'querylog']);
  });

  it('BENCH_CLIENTS, when set, gives the client counts of select, tls and querylog alike', () => {
    const config = readConfig({ BENCH_CLIENTS: '4, 16' });
    assert.deepEqual(config.clients, { select: [4, 16], tls: [4, 16], querylog: [4, 16] });
    assert.equal(config.churnClients, 4);
    assert.equal(readConfig({ BENCH_CHURN_CLIENTS: '8' }).churnClients, 8);
  });

  it('refuses unknown names and values that are not positive integers, naming the variable', () => {
    assert.throws(() => readConfig({ BENCH_CELLS: 'select,bogus' }), /BENCH_CELLS: unknown bogus/);
    assert.throws(() => readConfig({ BENCH_TARGETS: 'pgward,pgcat' }), /BENCH_TARGETS: unknown pgcat/);
    assert.throws(() => readConfig({ BENCH_SCRIPTS: 'tpcc' }), /BENCH_SCRIPTS: unknown tpcc/);
    assert.throws(() => readConfig({ BENCH_SECONDS: '0' }), /BENCH_SECONDS: expected a positive integer/);
    assert.throws(() => readConfig({ BENCH_IDLE_SESSIONS: '1.5' }), /BENCH_IDLE_SESSIONS/);
    assert.throws(() => readConfig({ BENCH_CLIENTS: '8,x' }), /BENCH_CLIENTS/);
    assert.throws(() => readConfig({ BENCH_PROXY_SESSION: 'mine' }), /BENCH_PROXY_SESSION: expected own or shared/);
    assert.throws(() => readConfig({ BENCH_CELLS: ' , ' }), /BENCH_CELLS: empty/);
    assert.throws(() => readConfig({ BENCH_MIRROR: 'yes' }), /BENCH_MIRROR: expected 0 or 1/);
    assert.equal(readConfig({ BENCH_MIRROR: '0' }).mirror, false);
    assert.equal(runSeconds(readConfig({})), 8, 'a mirrored run is half of 15 s, rounded up');
    assert.equal(runSeconds(readConfig({ BENCH_MIRROR: '0' })), 15);
  });

  it('BENCH_TARGETS filters every family; long-lived targets are those of the pgbench families only', () => {
    const config = readConfig({ BENCH_TARGETS: 'pgward,pgbouncer-tls,pgward-tls', BENCH_CELLS: 'churn,memory' });
    assert.deepEqual(familyTargets(config, 'churn'), ['pgward', 'pgbouncer-tls', 'pgward-tls']);
    assert.deepEqual(familyTargets(config, 'memory'), ['pgward', 'pgbouncer-tls', 'pgward-tls']);
    // The reference of each family takes its turn first.
    assert.deepEqual(familyTargets(readConfig({}), 'tls')[0], 'pgbouncer-tls');
    assert.deepEqual(familyTargets(readConfig({}), 'churn')[0], 'pgbouncer');
    assert.deepEqual(familyTargets(config, 'querylog'), ['pgward']);
    // memory starts a fresh proxy per measurement: with only memory chosen nothing stays up.
    assert.deepEqual(longLivedTargets(readConfig({ BENCH_CELLS: 'memory' })), []);
    assert.deepEqual(longLivedTargets(readConfig({ BENCH_CELLS: 'querylog' })), ['pgward', 'pgward-querylog', 'pgward-observer']);
    assert.deepEqual(familyTargets(readConfig({}), 'querylog'), ['pgward', 'pgward-observer', 'pgward-querylog']);
  });

  it('sizes max_connections for the memory cell\'s sessions on top of the pgbench clients', () => {
    const without = maxConnectionsFor(readConfig({ BENCH_CELLS: 'select' }));
    const withMemory = maxConnectionsFor(readConfig({ BENCH_CELLS: 'select,memory', BENCH_IDLE_SESSIONS: '1000' }));
    assert.ok(without >= 4 * 32, `${without}`);
    assert.ok(withMemory >= without + 1000, `${withMemory}`);
    assert.ok(maxConnectionsFor(readConfig({ BENCH_CLIENTS: '200' })) >= 800);
  });
});

describe('bench pgbouncer.ini', () => {
  const base = { backendPort: 5432, listenPort: 6432, authFile: '/x/userlist.txt' };

  it('is session mode, without TLS lines unless asked, with room for the capacity', () => {
    const ini = pgbouncerIni({ ...base, capacity: { sessions: 0 } });
    assert.match(ini, /^pool_mode = session$/m);
    assert.match(ini, /^postgres = host=127\.0\.0\.1 port=5432 dbname=postgres$/m);
    assert.doesNotMatch(ini, /tls/);
    assert.match(ini, /^max_client_conn = 200$/m);
    assert.match(ini, /^default_pool_size = 40$/m);
    const big = pgbouncerIni({ ...base, capacity: { sessions: 1000 } });
    assert.match(big, /^max_client_conn = 1100$/m);
    assert.match(big, /^default_pool_size = 1010$/m);
  });

  it('trusts its clients unless told how to log them in', () => {
    assert.match(pgbouncerIni({ ...base, capacity: { sessions: 0 } }), /^auth_type = trust$/m);
    assert.match(pgbouncerIni({ ...base, capacity: { sessions: 0 }, auth: 'plain' }), /^auth_type = plain$/m);
    assert.equal(readConfig({}).pgbouncerAuth, 'trust');
    assert.equal(readConfig({ BENCH_PGBOUNCER_AUTH: 'scram-sha-256' }).pgbouncerAuth, 'scram-sha-256');
    assert.throws(() => readConfig({ BENCH_PGBOUNCER_AUTH: 'password' }), /BENCH_PGBOUNCER_AUTH: expected one of trust, plain, md5, scram-sha-256/);
  });

  it('requires TLS on both sides with the given certificate', () => {
    const ini = pgbouncerIni({ ...base, capacity: { sessions: 100 }, tls: { cert: '/d/server.crt', key: '/d/server.key' } });
    assert.match(ini, /^client_tls_sslmode = require$/m);
    assert.match(ini, /^client_tls_cert_file = \/d\/server\.crt$/m);
    assert.match(ini, /^client_tls_key_file = \/d\/server\.key$/m);
    assert.match(ini, /^server_tls_sslmode = require$/m);
  });
});
