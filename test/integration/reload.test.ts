import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import pg from 'pg';
import { PgCluster } from '../helpers/pg-cluster.js';
import { startPgwardProcess } from '../helpers/pgward-process.js';

type Key = Awaited<ReturnType<typeof generateKeyPair>>;
const mint = (key: Key, sub: string) =>
  new SignJWT({ sub }).setProtectedHeader({ alg: 'EdDSA' }).setIssuedAt().setExpirationTime('5m').sign(key.privateKey);

async function login(port: number, user: string, token: string): Promise<string> {
  const c = new pg.Client({ connectionString: `postgres://${user}:${token}@127.0.0.1:${port}/postgres?sslmode=disable` });
  try {
    await c.connect();
    return (await c.query('select current_user as u')).rows[0].u;
  } catch (err) {
    return `error ${(err as { code?: string }).code}`;
  } finally {
    await c.end().catch(() => {});
  }
}

describe('reload with SIGHUP (a real pgward process)', () => {
  it('rotates keys, picks up new backends, keeps the old config when the new one is broken, and exits 0 on SIGTERM', async () => {
    await using cluster = await PgCluster.start({
      hba: ['host all all 127.0.0.1/32 scram-sha-256'],
      users: [{ name: 'alice', password: 'a-pw' }, { name: 'bob', password: 'b-pw' }],
    });
    const dir = await mkdtemp(join(tmpdir(), 'pgward-reload-'));
    try {
      const k1 = await generateKeyPair('EdDSA', { extractable: true });
      const k2 = await generateKeyPair('EdDSA', { extractable: true });
      const keys = join(dir, 'keys.pem');
      const backends = join(dir, 'backends.json');
      const url = (u: string, p: string) => `postgres://${u}:${p}@127.0.0.1:${cluster.port}/postgres?sslmode=disable`;
      await writeFile(keys, await exportSPKI(k1.publicKey));
      await writeFile(backends, JSON.stringify({ alice: url('alice', 'a-pw') }));
      await using proxy = await startPgwardProcess(['--insecure', '--backends', backends, '--signingKeys', keys, '--refresh', '0']);

      assert.equal(await login(proxy.port, 'alice', await mint(k1, 'alice')), 'alice');
      assert.equal(await login(proxy.port, 'bob', await mint(k1, 'bob')), 'error 28000');

      // Both keys during the rotation, and bob added.
      await writeFile(keys, (await exportSPKI(k1.publicKey)) + (await exportSPKI(k2.publicKey)));
      await writeFile(backends, JSON.stringify({ alice: url('alice', 'a-pw'), bob: url('bob', 'b-pw') }));
      let mark = proxy.events.length;
      proxy.signal('SIGHUP');
      await proxy.waitFor('configuration reloaded', 10_000, mark);
      assert.equal(await login(proxy.port, 'bob', await mint(k2, 'bob')), 'bob');
      assert.equal(await login(proxy.port, 'alice', await mint(k1, 'alice')), 'alice');

      // The old key is removed.
      await writeFile(keys, await exportSPKI(k2.publicKey));
      mark = proxy.events.length;
      proxy.signal('SIGHUP');
      await proxy.waitFor('configuration reloaded', 10_000, mark);
      assert.equal(await login(proxy.port, 'alice', await mint(k1, 'alice')), 'error 28P01');
      assert.equal(await login(proxy.port, 'alice', await mint(k2, 'alice')), 'alice');

      // A broken backends file: logged, and the previous configuration keeps serving.
      await writeFile(backends, '{ "alice": ');
      mark = proxy.events.length;
      proxy.signal('SIGHUP');
      const failed = await proxy.waitFor('configuration reload failed; keeping the previous configuration', 10_000, mark);
      assert.match(String(failed.reason), /backends\.json/);
      assert.equal(await login(proxy.port, 'bob', await mint(k2, 'bob')), 'bob');

      proxy.signal('SIGTERM');
      assert.equal(await proxy.exited, 0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
