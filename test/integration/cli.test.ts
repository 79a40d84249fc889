import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';

const BIN = fileURLToPath(new URL('../../../bin/pgward.js', import.meta.url));

function pgward(args: string[], timeoutMs = 20_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PGWARD_BACKENDS: '' } });
    // A process that does not exit by itself is killed (its exit code is then null).
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', () => clearTimeout(timer));
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('command line', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pgward-cli-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('prints help and version, exit 0', async () => {
    const help = await pgward(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /pgward start \[flags\]/);
    const startHelp = await pgward(['start', '--help']);
    assert.equal(startHelp.code, 0);
    assert.match(startHelp.stdout, /--bindAddr HOST:PORT/);
    assert.match(startHelp.stdout, /--signingKeys/);
    const version = await pgward(['--version']);
    assert.equal(version.code, 0);
    assert.match(version.stdout, /^pgward \d+\.\d+\.\d+\n$/);
  });

  it('exits 2 with one clear line for unknown commands and flags', async () => {
    const cmd = await pgward(['frobnicate']);
    assert.equal(cmd.code, 2);
    assert.match(cmd.stderr, /unknown command "frobnicate"/);
    const flag = await pgward(['start', '--insecure', '--nope']);
    assert.equal(flag.code, 2);
    assert.match(flag.stderr, /unknown flag --nope/);
  });

  it('check: prints the resolved setup and exits 0', async () => {
    await writeFile(join(dir, 'backends.json'), JSON.stringify({ alice: 'postgres://alice:SECRET-PW@db:5432/app?sslmode=disable' }));
    const keygen = await pgward(['keygen', '--out', dir]);
    assert.equal(keygen.code, 0, keygen.stderr);
    await writeFile(join(dir, 'pgward.yaml'), 'pipeline:\n  - drain-gate\n');
    const r = await pgward(['check', '--insecure', '--config', join(dir, 'pgward.yaml'), '--backends', join(dir, 'backends.json'), '--signingKeys', join(dir, 'public.pem')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /auth provider: jwt/);
    assert.match(r.stdout, /pipeline: auth → drain-gate/);
    assert.match(r.stdout, /key source: .*public\.pem/);
    assert.match(r.stdout, /configuration OK/);
    assert.ok(!r.stdout.includes('SECRET-PW'), 'no password in the output');
  });

  it('check: lists every problem and exits 2', async () => {
    await writeFile(join(dir, 'bad.yaml'), 'pipeline:\n  - drain-gate\n  - drain-gate\ncolour: blue\n');
    const r = await pgward(['check', '--config', join(dir, 'bad.yaml'), '--maxConnections', 'x']);
    assert.equal(r.code, 2);
    for (const p of [/no TLS configured/, /"drain-gate" is listed twice/, /colour: unknown setting/, /maxConnections: expected a whole number/, /backends: the jwt provider needs/]) {
      assert.match(r.stderr, p);
    }
  });

  it('start: refuses to run without TLS or --insecure (exit 2)', async () => {
    const r = await pgward(['start', '--auth', 'passthrough', '--backend', 'postgres://u@127.0.0.1:1/db']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no TLS configured/);
  });

  it('start: a bad backends file, key file or plugin is a configuration problem (exit 2, no stack trace)', async () => {
    await writeFile(join(dir, 'bad-backends.json'), '{"alice": "notaurl"}');
    await writeFile(join(dir, 'key.pem'), 'not a key');
    const r = await pgward(['start', '--insecure', '--bindAddr', '127.0.0.1:0', '--backends', join(dir, 'bad-backends.json'), '--signingKeys', join(dir, 'key.pem')]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^pgward: configuration problems:\n  - /);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    await writeFile(join(dir, 'plugins.yaml'), 'plugins: [./no-such-plugin]\n');
    const p = await pgward(['start', '--insecure', '--bindAddr', '127.0.0.1:0', '--auth', 'passthrough', '--backend', 'postgres://u@127.0.0.1:1/db', '--config', join(dir, 'plugins.yaml')]);
    assert.equal(p.code, 2, p.stderr);
    assert.match(p.stderr, /PGWARD_ERR_PLUGIN_NOT_FOUND/);
  });

  it('start: an address it cannot listen on is one clear line and exit 1', async () => {
    const { createServer } = await import('node:net');
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    try {
      const port = (taken.address() as { port: number }).port;
      const r = await pgward(['start', '--insecure', '--auth', 'passthrough', '--backend', 'postgres://u@127.0.0.1:1/db', '--bindAddr', `127.0.0.1:${port}`]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^pgward: cannot start: .*EADDRINUSE/m);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    } finally {
      taken.close();
    }
  });

  it('start: a metrics address in use stops the whole process (exit 1, the proxy port freed)', async () => {
    const { createServer, connect } = await import('node:net');
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const free = createServer();
    await new Promise<void>((r) => free.listen(0, '127.0.0.1', r));
    const proxyPort = (free.address() as { port: number }).port;
    await new Promise<void>((r) => free.close(() => r()));
    try {
      const port = (taken.address() as { port: number }).port;
      const started = Date.now();
      const r = await pgward(['start', '--insecure', '--auth', 'passthrough', '--backend', 'postgres://u@127.0.0.1:1/db', '--bindAddr', `127.0.0.1:${proxyPort}`, '--metricsAddr', `127.0.0.1:${port}`], 10_000);
      assert.equal(r.code, 1, `exit code (null = still running after 10 s): ${r.stderr}`);
      assert.ok(Date.now() - started < 10_000);
      assert.match(r.stderr, /^pgward: cannot start: .*EADDRINUSE/m);
      assert.doesNotMatch(r.stdout, /pgward listening/);
      // Nothing is left on the proxy port: a connection is refused.
      const refused = await new Promise<boolean>((resolve) => {
        const s = connect(proxyPort, '127.0.0.1');
        s.on('connect', () => (s.destroy(), resolve(false)));
        s.on('error', () => resolve(true));
      });
      assert.ok(refused, 'the proxy port is closed again');
    } finally {
      taken.close();
    }
  });

  it('error messages: did you mean, a missing TLS file by name, .json must be JSON, version, help', async () => {
    const typo = await pgward(['start', '--insecure', '--bindAdr', '127.0.0.1:0']);
    assert.equal(typo.code, 2);
    assert.match(typo.stderr, /unknown flag --bindAdr \(did you mean --bindAddr\?\)/);
    const far = await pgward(['start', '--insecure', '--frobnicate', 'x']);
    assert.match(far.stderr, /unknown flag --frobnicate\n/, 'no suggestion when nothing is close');

    await writeFile(join(dir, 'tls.crt'), 'cert');
    const key = await pgward(['check', '--bindCert', join(dir, 'tls.crt'), '--bindKey', join(dir, 'missing.key'), '--auth', 'passthrough', '--backend', 'postgres://u@127.0.0.1:1/db']);
    assert.equal(key.code, 2);
    assert.match(key.stderr, /bindKey: cannot read .*missing\.key: no such file/);
    assert.doesNotMatch(key.stderr, /no TLS configured/);

    await writeFile(join(dir, 'comma.json'), '{\n  "alice": "postgres://alice:PW@db:5432/app",\n}\n');
    await writeFile(join(dir, 'comma-config.json'), '{\n  "insecure": true,\n}\n');
    const keygen = await pgward(['keygen', '--out', join(dir, 'k'), '--force']);
    assert.equal(keygen.code, 0, keygen.stderr);
    const backends = await pgward(['check', '--insecure', '--backends', join(dir, 'comma.json'), '--signingKeys', join(dir, 'k', 'public.pem')]);
    assert.equal(backends.code, 2);
    // At the comma (line 2), not at the "}" after it where JSON.parse gives up.
    assert.match(backends.stderr, /comma\.json: invalid JSON at line 2, column 45: a trailing comma/);
    assert.doesNotMatch(backends.stderr, /PW/, 'the file text is not echoed');
    const config = await pgward(['check', '--config', join(dir, 'comma-config.json')]);
    assert.equal(config.code, 2);
    assert.match(config.stderr, /comma-config\.json: invalid JSON at line 2, column 19: a trailing comma/);

    const version = await pgward(['version']);
    assert.equal(version.code, 0);
    assert.match(version.stdout, /^pgward \d+\.\d+\.\d+\n$/);
    const help = await pgward(['start', '--help']);
    assert.match(help.stdout, /-v, --verbose/);
    assert.match(help.stdout, /Durations .*seconds/s);
    assert.match(help.stdout, /1h30m/);
  });

  it('check: lists the problems of every stage in one run (settings, backends file, keys)', async () => {
    const r = await pgward(['check', '--bindCert', join(dir, 'nope.crt'), '--bindKey', join(dir, 'nope.key'), '--backends', join(dir, 'nope-backends.yaml'), '--signingKeys', join(dir, 'nope.pem'), '--maxConnections', '0']);
    assert.equal(r.code, 2);
    for (const p of [/bindCert: cannot read .*nope\.crt/, /bindKey: cannot read .*nope\.key/, /maxConnections: must be at least 1/, /nope-backends\.yaml: cannot read the file/, /nope\.pem/]) assert.match(r.stderr, p);
  });
});
