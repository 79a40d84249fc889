import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parseDuration } from '../../src/util/duration.js';
import { ConfigError } from '../../src/config/load.js';
import { buildProxyConfig, type CommandAuthConfig } from '../../src/config/proxy-config.js';
import { splitCommandLine } from '../../src/util/command-line.js';

const BACKEND = 'postgres://app:s3cret@db.internal:5432/app?sslmode=require';

/** A temporary directory removed when this file's tests are done (some hold a peer secret). */
const scratchDirs: string[] = [];
function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  scratchDirs.push(dir);
  return dir;
}
after(() => {
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
});

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

  it('-v, -vv and pg-auth-proxy\'s --verbose raise the log level', () => {
    const level = (...flags: string[]) => buildProxyConfig(['--insecure', '--auth', 'passthrough', '--backend', BACKEND, ...flags], {}).log.level;
    assert.equal(level(), 'info');
    assert.equal(level('-v'), 'debug');
    assert.equal(level('--verbose'), 'debug');
    assert.equal(level('-vv'), 'trace');
    assert.equal(level('-v', '--verbose'), 'trace');
  });

  it('takes flag > env > file > default', () => {
    const dir = scratchDir('pgward-cfg-');
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

  it('checks --logDestination can be appended to without creating it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgward-logdest-'));
    const base = ['--insecure', '--auth', 'passthrough', '--backend', BACKEND];
    const log = join(dir, 'pgward.log');
    buildProxyConfig([...base, '--logDestination', log], {});
    assert.equal(existsSync(log), false, 'checking the config leaves no file behind');
    const missingDir = problems(() => buildProxyConfig([...base, '--logDestination', join(dir, 'nope', 'x.log')], {}));
    assert.ok(missingDir.some((x) => /^logDestination: cannot append to .*nope.*ENOENT/.test(x)), missingDir.join('\n'));
    const isDir = problems(() => buildProxyConfig([...base, '--logDestination', dir], {}));
    assert.ok(isDir.some((x) => /logDestination: cannot append to .*: it is a directory/.test(x)), isDir.join('\n'));
    rmSync(dir, { recursive: true });
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
    const dir = scratchDir('pgward-cfg-');
    const file = join(dir, 'pgward.yaml');
    writeFileSync(file, 'insecure: true\nauth:\n  provider: command\n  cmd: [/bin/auth, "--flag"]\n  timeout: 5s\n');
    const f = buildProxyConfig(['--config', file], {});
    assert.deepEqual(f.auth, { provider: 'command', argv: ['/bin/auth', '--flag'], cleartext: false, timeoutMs: 5000 });
    writeFileSync(file, 'insecure: true\nauth:\n  provider: command\n  cmd: /bin/auth\n  colour: blue\n');
    const p = problems(() => buildProxyConfig(['--config', file], {}));
    assert.ok(p.includes('auth.colour: unknown setting for the command provider'), p.join('\n'));
    assert.ok(p.some((x) => /auth.cmd: expected a non-empty list/.test(x)), p.join('\n'));
  });

  it("reads connection settings for the authenticator's backends, refusing what the authenticator decides", () => {
    const base = ['--insecure', '--auth', 'command', '--authCmd', '/bin/auth'];
    const c = buildProxyConfig([...base, '--authCmdBackendParams', 'sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=3&application_name=gw'], {});
    assert.equal(c.auth.provider, 'command');
    const d = (c.auth as CommandAuthConfig).backendDefaults;
    assert.equal(d?.sslmode, 'verify-full');
    assert.equal(d?.sslrootcert, '/etc/ca.pem');
    assert.equal(d?.connectTimeoutMs, 3000);
    assert.equal(d?.applicationName, 'gw');
    assert.equal(d?.host, undefined);
    const decided = problems(() => buildProxyConfig([...base, '--authCmdBackendParams', 'sslmode=require&host=evil&password=x'], {}));
    assert.ok(decided.some((x) => /authCmdBackendParams: host, password cannot be set here/.test(x)), decided.join('\n'));
    const bad = problems(() => buildProxyConfig([...base, '--authCmdBackendParams', 'sslmode=sometimes'], {}));
    assert.ok(bad.some((x) => /^authCmdBackendParams: .*sslmode/.test(x)), bad.join('\n'));
  });

  it('names an unavailable auth provider', () => {
    const p = problems(() => buildProxyConfig(['--insecure', '--auth', 'nope'], {}));
    assert.ok(p.some((x) => /provider "nope" is not available/.test(x)), p.join('\n'));
  });
});

describe('peers configuration', () => {
  const dir = scratchDir('pgward-peers-cfg-');
  const secretFile = join(dir, 'secret');
  writeFileSync(secretFile, 'x'.repeat(40) + '\n');
  const withPeers = (peers: string, env: NodeJS.ProcessEnv = {}) => {
    const file = join(dir, `c${Math.random()}.yaml`);
    writeFileSync(file, `peers:\n${peers}`);
    return () => buildProxyConfig(['--insecure', '--auth', 'passthrough', '--backend', BACKEND, '--config', file], env);
  };

  it('reads id, listen, the secret file and the instances', () => {
    const c = withPeers(`  id: 2\n  listen: 127.0.0.1:7002\n  secretFile: ${secretFile}\n  instances:\n    1: 10.0.0.1:7001\n    2: 10.0.0.2:7002\n`)();
    assert.equal(c.peers?.id, 2);
    assert.deepEqual(c.peers?.listen, { host: '127.0.0.1', port: 7002 });
    assert.equal(c.peers?.secret.toString(), 'x'.repeat(40), 'the trailing newline is not part of the secret');
    assert.deepEqual([...c.peers!.instances], [[1, { host: '10.0.0.1', port: 7001 }], [2, { host: '10.0.0.2', port: 7002 }]]);
  });

  it('takes the secret from PGWARD_PEER_SECRET and refuses one inline in the file', () => {
    const c = withPeers('  listen: 127.0.0.1:7001\n  instances: { 1: 127.0.0.1:7001, 2: 127.0.0.1:7002 }\n', { PGWARD_PEER_SECRET: 'y'.repeat(32), PGWARD_PEER_ID: '2' })();
    assert.equal(c.peers?.secretSource, 'environment PGWARD_PEER_SECRET');
    assert.equal(c.peers?.id, 2, 'the id from PGWARD_PEER_ID');
    const p = problems(withPeers('  id: 1\n  listen: 127.0.0.1:7001\n  secret: hunter2hunter2\n  instances: { 2: 127.0.0.1:7002 }\n'));
    assert.ok(p.some((x) => /peers.secret: put the secret in peers.secretFile/.test(x)), p.join('\n'));
    assert.ok(p.some((x) => /shared secret is missing/.test(x)), p.join('\n'));
    assert.ok(!p.join('\n').includes('hunter2'), 'the inline secret is not echoed');
  });

  it('lists every problem: bad id, bad addresses, short secret, no other instance', () => {
    const short = join(dir, 'short');
    writeFileSync(short, 'tooshort');
    const p = problems(withPeers(`  id: 200\n  listen: nowhere\n  secretFile: ${short}\n  instances:\n    0: 127.0.0.1:1\n    3: bad\n  colour: blue\n`));
    for (const re of [/peers.id \(or PGWARD_PEER_ID\): expected a whole number from 1 to 127/, /peers.listen: invalid address/, /at least 32 bytes/, /peers.instances.0: ids are whole numbers/, /peers.instances.3: invalid address/, /peers.colour: unknown setting/]) {
      assert.ok(p.some((x) => re.test(x)), `${re}: ${p.join('\n')}`);
    }
    const alone = problems(withPeers(`  id: 1\n  listen: 127.0.0.1:7001\n  secretFile: ${secretFile}\n  instances: { 1: 127.0.0.1:7001 }\n`));
    assert.ok(alone.some((x) => /list at least one other instance/.test(x)), alone.join('\n'));
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
