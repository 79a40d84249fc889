import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { TestCA } from '../helpers/certs.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { runPsql } from '../helpers/psql.js';
import { startTestProxy } from '../helpers/proxy.js';

/**
 * An authenticator in the pgAuthProxy style: knows one user "alice" with password "wonderland",
 * checks the md5 response (or the cleartext password) itself and sends her to the cluster as "app".
 */
function authenticator(port: number): string {
  return `#!${process.execPath}
const { createHash } = require('node:crypto');
const md5 = (b) => createHash('md5').update(b).digest('hex');
let input = '';
process.stdin.on('data', (d) => (input += d));
process.stdin.on('end', () => {
  const kv = Object.fromEntries(input.split('\\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  if (kv.user !== 'alice') process.exit(1);
  const ok = kv._SOURCE_SALT === '00000000'
    ? kv._SOURCE_CRED === 'wonderland'
    : kv._SOURCE_CRED === 'md5' + md5(Buffer.concat([Buffer.from(md5('wonderlandalice')), Buffer.from(kv._SOURCE_SALT, 'hex')]));
  if (!ok) process.exit(1);
  process.stdout.write('user=app\\ndatabase=postgres\\n_META_TARGET_HOST=127.0.0.1:${port}\\n_META_TARGET_CRED=app-secret\\n');
});
`;
}

/** The authenticator as an executable script in a fresh temp dir. */
async function writeAuthenticator(port: number): Promise<{ dir: string; script: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'pgward-authcmd-'));
  const script = join(dir, 'auth.cjs');
  await writeFile(script, authenticator(port));
  await chmod(script, 0o755);
  return { dir, script };
}

/** Connects (through the proxy), runs one query and returns its first row. */
async function firstRow(url: string, sql: string): Promise<Record<string, unknown>> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(sql)).rows[0];
  } finally {
    await c.end();
  }
}

describe('command provider (pgAuthProxy external authenticator)', () => {
  let cluster: PgCluster;
  let dir: string;
  let script: string;

  before(async () => {
    cluster = await PgCluster.start({ hba: ['host all all 127.0.0.1/32 scram-sha-256'], users: [{ name: 'app', password: 'app-secret' }] });
    ({ dir, script } = await writeAuthenticator(cluster.port));
  });

  after(async () => {
    await cluster?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const login = async (proxyUrl: string): Promise<string> => (await firstRow(proxyUrl, 'select current_user as u')).u as string;

  it('md5 client auth: the authenticator checks the response and picks the backend', async () => {
    await using proxy = await startTestProxy(['--insecure', '--auth', 'command', '--authCmd', script]);
    assert.equal(await login(proxy.url('alice', 'wonderland')), 'app');
    const r = await runPsql([proxy.url('alice'), '-c', 'select current_user'], { PGPASSWORD: 'wonderland' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'app');
    await assert.rejects(login(proxy.url('alice', 'wrong')), (e: { code?: string; message: string }) => e.code === '28P01' && /"alice"/.test(e.message));
    const logs = proxy.logs.join('\n');
    assert.ok(!logs.includes('wonderland') && !logs.includes('app-secret'), 'no secret in the logs');
  });

  it('cleartext client auth with --clearPasswd', async () => {
    await using proxy = await startTestProxy(['--insecure', '--auth', 'command', '--authCmd', script, '--clearPasswd']);
    assert.equal(await login(proxy.url('alice', 'wonderland')), 'app');
    await assert.rejects(login(proxy.url('bob', 'wonderland')), (e: { code?: string }) => e.code === '28P01');
  });

  it('an authenticator that hangs is cut off with a clear error', async () => {
    const slow = join(dir, 'slow.sh');
    await writeFile(slow, '#!/bin/sh\nexec sleep 30\n');
    await chmod(slow, 0o755);
    const file = join(dir, 'slow.yaml');
    await writeFile(file, `insecure: true\nauth:\n  provider: command\n  cmd: ["${slow}"]\n  timeout: 500ms\n`);
    await using proxy = await startTestProxy(['--config', file]);
    const t0 = Date.now();
    await assert.rejects(login(proxy.url('alice', 'wonderland')), (e: { code?: string }) => e.code === '08001');
    assert.ok(Date.now() - t0 < 5000);
  });
});

describe('command provider: TLS to the backends the authenticator names', () => {
  let ca: TestCA;
  let otherCa: TestCA;
  let cluster: PgCluster;
  let dir: string;
  let script: string;

  before(async () => {
    ca = await TestCA.create();
    otherCa = await TestCA.create(undefined, 'unrelated CA');
    const server = await ca.issue('server', { cn: 'localhost', sans: ['DNS:localhost', 'IP:127.0.0.1'] });
    cluster = await PgCluster.start({
      ssl: { ...server, ca: ca.cert },
      hba: ['hostssl all app 127.0.0.1/32 scram-sha-256'],
      users: [{ name: 'app', password: 'app-secret' }],
    });
    ({ dir, script } = await writeAuthenticator(cluster.port));
  });

  after(async () => {
    await cluster?.stop();
    await ca?.[Symbol.asyncDispose]();
    await otherCa?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  /** Logs in as alice through a proxy with these backend parameters; returns whether the backend session uses TLS. */
  async function backendSsl(extra: string[]): Promise<boolean> {
    await using proxy = await startTestProxy(['--insecure', '--auth', 'command', '--authCmd', script, '--clearPasswd', ...extra]);
    return (await firstRow(proxy.url('alice', 'wonderland'), 'select ssl from pg_stat_ssl where pid = pg_backend_pid()')).ssl as boolean;
  }

  it('applies --authCmdBackendParams (or auth.backendParams) to every backend: sslmode, sslrootcert', async () => {
    assert.equal(await backendSsl([]), true, 'the default, prefer, uses TLS when offered');
    assert.equal(await backendSsl(['--authCmdBackendParams', `sslmode=verify-full&sslrootcert=${ca.cert}`]), true);
    await assert.rejects(
      backendSsl(['--authCmdBackendParams', `sslmode=verify-ca&sslrootcert=${otherCa.cert}`]),
      (e: { code?: string }) => e.code === '08001',
      'a backend whose certificate the configured CA does not sign is never used',
    );
    await assert.rejects(backendSsl(['--authCmdBackendParams', 'sslmode=disable']), (e: { code?: string }) => e.code === '28000');
    const file = join(dir, 'c.yaml');
    await writeFile(file, `insecure: true\nauth:\n  provider: command\n  cmd: ["${script}"]\n  cleartext: true\n  backendParams: "sslmode=verify-ca&sslrootcert=${ca.cert}"\n`);
    assert.equal(await backendSsl(['--config', file]), true);
  });
});
