import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseDuration } from '../../src/config/duration.js';
import { ConfigError } from '../../src/config/load.js';
import { buildProxyConfig } from '../../src/config/proxy-config.js';
import { splitCommandLine } from '../../src/auth/command-runner.js';

const BACKEND = 'postgres://app:s3cret@db.internal:5432/app?sslmode=require';

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  assert.fail('expected a ConfigError');
}

describe('durations', () => {
  it('parses units and bare seconds', () => {
    assert.equal(parseDuration('30s'), 30_000);
    assert.equal(parseDuration('10m'), 600_000);
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('15'), 15_000);
    assert.throws(() => parseDuration('soon'), /invalid duration/);
    assert.throws(() => parseDuration('10x'), /invalid duration/);
  });
});

describe('start configuration', () => {
  it('applies defaults and accepts camelCase and kebab-case flags', () => {
    const c = buildProxyConfig(['--insecure', '--auth', 'passthrough', '--backend', BACKEND, '--auth-timeout=2s'], {});
    assert.deepEqual(c.listen, { host: '127.0.0.1', port: 13013 });
    assert.equal(c.authTimeoutMs, 2000);
    assert.equal(c.maxConnections, 1000);
    assert.equal(c.gracePeriodMs, 30_000);
    assert.equal(c.auth.provider, 'passthrough');
    if (!('backend' in c.auth)) return;
    assert.equal(c.auth.backend.host, 'db.internal');
    assert.equal(c.auth.credsOverride, true);
    assert.equal(c.auth.credsTtlMs, 600_000);
  });

  it('takes flag > env > file > default', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgward-cfg-'));
    const file = join(dir, 'pgward.yaml');
    writeFileSync(file, `insecure: true\nauth: passthrough\nbackend: "${BACKEND}"\nmaxConnections: 7\nauthTimeout: 9s\ngracePeriod: 3s\n`);
    const env = { PGWARD_MAX_CONNECTIONS: '8', PGWARD_AUTH_TIMEOUT: '4s' };
    const c = buildProxyConfig(['--config', file, '--maxConnections', '9'], env);
    assert.equal(c.maxConnections, 9, 'flag wins');
    assert.equal(c.authTimeoutMs, 4000, 'env beats file');
    assert.equal(c.gracePeriodMs, 3000, 'file beats default');
  });

  it('refuses to run without TLS unless --insecure', () => {
    const p = problems(() => buildProxyConfig(['--auth', 'passthrough', '--backend', BACKEND], {}));
    assert.ok(p.some((x) => /no TLS configured/.test(x)), p.join('\n'));
  });

  it('lists every problem at once, naming where each came from', () => {
    const p = problems(() =>
      buildProxyConfig(['--insecure', '--auth', 'passthrough', '--backend', BACKEND, '--maxConnections', 'lots', '--bogus', 'x'], {
        PGWARD_AUTH_TIMEOUT: 'soon',
      }),
    );
    assert.ok(p.some((x) => x === 'unknown flag --bogus'), p.join('\n'));
    assert.ok(p.some((x) => /command line: maxConnections: expected a whole number/.test(x)), p.join('\n'));
    assert.ok(p.some((x) => /environment PGWARD_AUTH_TIMEOUT: authTimeout: invalid duration/.test(x)), p.join('\n'));
  });

  it('passthrough refuses a non-loopback listener without TLS and an explicit flag', () => {
    const p = problems(() =>
      buildProxyConfig(['--insecure', '--auth', 'passthrough', '--backend', BACKEND, '--bindAddr', '0.0.0.0:5432'], {}),
    );
    assert.ok(p.some((x) => /listens only on loopback/.test(x)), p.join('\n'));
  });

  it('never echoes a backend password in a problem', () => {
    const p = problems(() =>
      buildProxyConfig(['--insecure', '--auth', 'passthrough', '--backend', 'postgres://u:topsecret@h:99999/db'], {}),
    );
    assert.ok(p.length > 0);
    assert.ok(p.every((x) => !x.includes('topsecret')), p.join('\n'));
  });

  it('reads the command provider from flags or from an auth mapping in the file', () => {
    const c = buildProxyConfig(['--insecure', '--auth', 'command', '--authCmd', '/usr/local/bin/auth --mode "strict x"', '--clearPasswd'], {});
    assert.deepEqual(c.auth, { provider: 'command', argv: ['/usr/local/bin/auth', '--mode', 'strict x'], cleartext: true, timeoutMs: undefined });
    const dir = mkdtempSync(join(tmpdir(), 'pgward-cfg-'));
    const file = join(dir, 'pgward.yaml');
    writeFileSync(file, 'insecure: true\nauth:\n  provider: command\n  cmd: [/bin/auth, "--flag"]\n  timeout: 5s\n');
    const f = buildProxyConfig(['--config', file], {});
    assert.deepEqual(f.auth, { provider: 'command', argv: ['/bin/auth', '--flag'], cleartext: false, timeoutMs: 5000 });
    writeFileSync(file, 'insecure: true\nauth:\n  provider: command\n  cmd: /bin/auth\n  colour: blue\n');
    const p = problems(() => buildProxyConfig(['--config', file], {}));
    assert.ok(p.includes('auth.colour: unknown setting for the command provider'), p.join('\n'));
    assert.ok(p.some((x) => /auth.cmd: expected a non-empty list/.test(x)), p.join('\n'));
  });

  it('names an unavailable auth provider', () => {
    const p = problems(() => buildProxyConfig(['--insecure', '--auth', 'nope'], {}));
    assert.ok(p.some((x) => /provider "nope" is not available/.test(x)), p.join('\n'));
  });
});

describe('command lines', () => {
  it('splits like a shell for words and quotes, without expanding anything', () => {
    assert.deepEqual(splitCommandLine(`aws rds generate-db-auth-token --hostname "db 1" --region 'eu-west-1'`), [
      'aws', 'rds', 'generate-db-auth-token', '--hostname', 'db 1', '--region', 'eu-west-1',
    ]);
    assert.deepEqual(splitCommandLine(`echo $HOME a\\ b ""`), ['echo', '$HOME', 'a b', '']);
    assert.throws(() => splitCommandLine(`echo "open`), /unterminated quote/);
  });
});
