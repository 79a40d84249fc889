import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { TestCA } from '../helpers/certs.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { runPsql } from '../helpers/psql.js';
import { until } from '../helpers/wait.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/**
 * Where the addon is not built, `--nativeTls` falls back to Node's TLS sockets: pgward says so at
 * start and serves TLS on both hops as without the flag. A copy of the built package without
 * `native/build` is such a place.
 */
describe('--nativeTls without the native addon', () => {
  it('warns, and runs TLS on both hops on Node\'s sockets', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pgward-no-addon-'));
    await using ca = await TestCA.create();
    const proxyCert = await ca.issue('proxy', { cn: 'localhost' });
    const server = await ca.issue('server', { cn: 'localhost', sans: ['DNS:localhost'] });
    await using cluster = await PgCluster.start({ ssl: server, hba: ['hostssl all all 127.0.0.1/32 trust'] });
    try {
      await cp(join(ROOT, 'dist', 'src'), join(dir, 'dist', 'src'), { recursive: true });
      await cp(join(ROOT, 'bin'), join(dir, 'bin'), { recursive: true });
      await cp(join(ROOT, 'package.json'), join(dir, 'package.json'));
      await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
      const child = spawn(process.execPath, [
        join(dir, 'bin', 'pgward.js'), 'start', '--logFormat', 'json', '--bindAddr', '127.0.0.1:0', '--nativeTls',
        '--bindCert', proxyCert.cert, '--bindKey', proxyCert.key, '--auth', 'passthrough',
        '--backend', `postgres://postgres@localhost:${cluster.port}/postgres?sslmode=verify-full&sslrootcert=${ca.cert}`,
      ], { stdio: ['ignore', 'pipe', 'inherit'] });
      const events: Record<string, unknown>[] = [];
      let buf = '';
      child.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        for (let nl; (nl = buf.indexOf('\n')) >= 0; buf = buf.slice(nl + 1)) events.push(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
      });
      const exited = new Promise((r) => child.once('exit', r));
      try {
        await until(() => events.some((e) => e.msg === 'pgward listening'), 20_000, 'pgward to start');
        const listening = events.find((e) => e.msg === 'pgward listening')!;
        assert.equal(listening.native_tls, 'unavailable');
        await until(() => events.some((e) => e.msg === "native TLS not available: TLS runs on Node's TLS sockets"), 5000, 'the warning');
        const port = String(listening.address).split(':')[1];
        const r = await runPsql([`postgres://postgres@127.0.0.1:${port}/postgres?sslmode=verify-full&sslrootcert=${ca.cert}&host=localhost&hostaddr=127.0.0.1`, '-c', 'select ssl from pg_stat_ssl where pid = pg_backend_pid()']);
        assert.equal(r.stdout.trim(), 't', r.stderr);
        await until(() => events.some((e) => e.msg === 'session started'), 5000, 'the session log line');
        const started = events.find((e) => e.msg === 'session started')!;
        assert.deepEqual([started.tls_layer, started.backend_tls_layer], ['node', 'node']);
      } finally {
        child.kill('SIGTERM');
        await exited;
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
