import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parseBackends } from '../../src/auth/routing.js';
import { targetKey, targetLabel } from '../../src/backend/pool-target.js';
import { DEFAULT_POOL_SETTINGS, describePoolSettings, parsePoolOverride, poolSettings } from '../../src/backend/pool-settings.js';
import { parseBackendUrl } from '../../src/backend/url.js';
import { ConfigError } from '../../src/config/load.js';
import { buildProxyConfig } from '../../src/config/proxy-config.js';
import { poolableParams } from '../../src/server/backend-phase.js';

const BACKEND = 'postgres://app:s3cret@db.internal:5432/app?sslmode=disable';
const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function configFile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgward-pool-cfg-'));
  dirs.push(dir);
  const path = join(dir, 'pgward.yaml');
  writeFileSync(path, text);
  return path;
}

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return assert.fail('expected a ConfigError');
}

describe('pool settings', () => {
  const base = ['--insecure', '--auth', 'passthrough', '--backend', BACKEND];

  it('defaults to session pooling as SPEC §8 gives it', () => {
    assert.deepEqual(buildProxyConfig(base, {}).pool, {
      mode: 'session', maxSize: 100, waitTimeoutMs: 5000, maxIdle: 16, idleTimeoutMs: 600_000, maxLifetimeMs: 3_600_000, reset: 'DISCARD ALL', warm: 0,
    });
  });

  it('takes the config file, then the environment, then flags', () => {
    const file = configFile('pool:\n  maxSize: 20\n  idleTimeout: 30s\n  reset: "DISCARD ALL"\n  mode: session\n');
    const fromFile = buildProxyConfig([...base, '--config', file], {}).pool;
    assert.equal(fromFile.maxSize, 20);
    assert.equal(fromFile.idleTimeoutMs, 30_000);
    const env = buildProxyConfig([...base, '--config', file], { PGWARD_POOL_MAX_SIZE: '30' }).pool;
    assert.equal(env.maxSize, 30);
    const flag = buildProxyConfig([...base, '--config', file, '--poolMaxSize', '40', '--poolMode', 'off'], { PGWARD_POOL_MAX_SIZE: '30' }).pool;
    assert.equal(flag.maxSize, 40);
    assert.equal(flag.mode, 'off');
    assert.equal(flag.idleTimeoutMs, 30_000, 'the file still gives what no flag overrides');
  });

  it('names every bad value', () => {
    const file = configFile('pool:\n  maxSize: 0\n  waitTimeout: soon\n  mode: transaction\n  colour: red\n');
    const problems = problemsOf(() => buildProxyConfig([...base, '--config', file, '--poolMode', 'sometimes'], {}));
    assert.ok(problems.some((p) => /^pool\.maxSize: expected a whole number of at least 1/.test(p)), problems.join('\n'));
    assert.ok(problems.some((p) => /^pool\.waitTimeout: expected a duration/.test(p)));
    assert.ok(problems.some((p) => /^pool\.mode: expected session or off, got "transaction"/.test(p)));
    assert.ok(problems.some((p) => /^pool: unknown key "colour"/.test(p)));
    assert.ok(problems.some((p) => /^poolMode: expected session or off, got "sometimes"/.test(p)));
  });

  it('keeps maxIdle and warm within maxSize, and describes the result', () => {
    const s = poolSettings(DEFAULT_POOL_SETTINGS, { maxSize: 3, warm: 10 });
    assert.equal(s.maxIdle, 3);
    assert.equal(s.warm, 3);
    assert.match(describePoolSettings(s), /^pool session: maxSize 3, waitTimeout 5s, maxIdle 3, .* warm 3$/);
    assert.equal(describePoolSettings({ ...s, mode: 'off' }), 'pool off (a new backend connection per session)');
    const found: string[] = [];
    assert.deepEqual(parsePoolOverride({ waitTimeout: 2, maxLifetime: '1h' }, 'x', found), { waitTimeoutMs: 2000, maxLifetimeMs: 3_600_000 });
    assert.deepEqual(found, []);
  });
});

describe('pool targets', () => {
  it('reads a backends entry’s own pool settings, refusing bad ones', () => {
    const routes = parseBackends({ a: { url: BACKEND, pool: { maxSize: 5 } }, b: BACKEND }, 'backends.json');
    const ctx = { claims: {}, startupUser: 'x', startupDatabase: undefined };
    assert.deepEqual(routes.match('a', ctx)!.target.pool, { maxSize: 5 });
    assert.equal(routes.match('b', ctx)!.target.pool, undefined);
    assert.deepEqual(routes.poolOverrides(), [{ key: 'a', pool: { maxSize: 5 } }]);
    assert.throws(() => parseBackends({ a: { url: BACKEND, pool: { maxSize: -1 } } }, 'backends.json'), /key "a": pool\.maxSize/);
  });

  it('knows which routes are not templates, and names each route by a digest that changes with it', () => {
    const routes = parseBackends({ a: BACKEND, '/^(u.*)$/': 'postgres://$1@db:5432/app', t: { url: BACKEND, user: '{claim.sub}' }, '*': BACKEND }, 'f');
    assert.deepEqual(routes.fixed().map((r) => r.key), ['a', '*']);
    const again = parseBackends({ a: BACKEND, '*': BACKEND.replace('5432', '5433') }, 'f');
    const ctx = { claims: {}, startupUser: 'x', startupDatabase: undefined };
    assert.ok(again.routeIds.has(routes.match('a', ctx)!.target.routeId!), 'unchanged entry');
    assert.ok(!again.routeIds.has(routes.match('zzz', ctx)!.target.routeId!), 'changed fallback');
    assert.ok(![...routes.routeIds].some((id) => id.includes('s3cret')));
  });

  it('tells targets apart by everything that decides the login, never showing a password', () => {
    const t = parseBackendUrl(BACKEND);
    const key = targetKey(t);
    assert.ok(!key.includes('s3cret'));
    assert.notEqual(targetKey({ ...t, password: 'other' }), key);
    assert.notEqual(targetKey({ ...t, user: 'other' }), key);
    assert.notEqual(targetKey({ ...t, sslmode: 'require' }), key);
    assert.notEqual(targetKey({ ...t, params: { search_path: 'x' } }), key);
    assert.equal(targetKey({ ...t }), key);
    // A password from a command is pooled by its source: a rotated token keeps the pool.
    assert.equal(targetKey({ ...t, password: 'tok-1', passwordFromCommand: true }), targetKey({ ...t, password: 'tok-2', passwordFromCommand: true }));
    assert.equal(targetLabel(t), 'app@db.internal:5432/app');
    assert.equal(targetLabel({ ...t, host: '::1' }), 'app@[::1]:5432/app');
  });

  it("splits a session's startup parameters into the target's login and what set_config applies", () => {
    const target = parseBackendUrl('postgres://app@db:5432/app?application_name=fixed');
    const reserved = { reservedParams: new Set<string>(), allowReplication: false };
    const params = new Map([['user', 'app'], ['database', 'app'], ['application_name', 'fixed'], ['TimeZone', 'UTC'], ['pgward.remote_addr', '10.0.0.1']]);
    const split = poolableParams({ target, params, user: 'app', database: 'app', reserved })!;
    assert.deepEqual([...split.login], [['user', 'app'], ['database', 'app'], ['application_name', 'fixed']]);
    assert.deepEqual([...split.apply], [['TimeZone', 'UTC'], ['pgward.remote_addr', '10.0.0.1']]);
    for (const [name, value] of [['options', '-c work_mem=8MB'], ['replication', 'database'], ['crdb:remote_addr', '10.0.0.1']]) {
      const own = new Map([...params, [name!, value!]]);
      assert.equal(poolableParams({ target, params: own, user: 'app', database: 'app', reserved }), undefined, name);
    }
  });
});
