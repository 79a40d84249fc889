import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import pg from 'pg';
import { PgCluster } from '../helpers/pg-cluster.js';
import { startPgwardProcess } from '../helpers/pgward-process.js';
import { until } from '../helpers/wait.js';

const BIN = fileURLToPath(new URL('../../../bin/pgward.js', import.meta.url));
type Key = Awaited<ReturnType<typeof generateKeyPair>>;
const mint = (key: Key, sub: string) => new SignJWT({ sub }).setProtectedHeader({ alg: 'EdDSA' }).setExpirationTime('10m').sign(key.privateKey);

describe('revocation in a real pgward process', () => {
  let cluster: PgCluster;
  let dir: string;
  let key: Key;
  let base: string[];
  let revocations: string;

  before(async () => {
    cluster = await PgCluster.start({ users: [{ name: 'alice', password: 'a' }, { name: 'bob', password: 'b' }] });
    dir = await mkdtemp(join(tmpdir(), 'pgward-admin-proc-'));
    key = await generateKeyPair('EdDSA', { extractable: true });
    await writeFile(join(dir, 'key.pem'), await exportSPKI(key.publicKey));
    const db = (u: string) => `postgres://${u}@127.0.0.1:${cluster.port}/postgres?sslmode=disable`;
    await writeFile(join(dir, 'backends.json'), JSON.stringify({ alice: db('alice'), bob: db('bob') }));
    revocations = join(dir, 'revocations.yaml');
    base = ['--insecure', '--backends', join(dir, 'backends.json'), '--signingKeys', join(dir, 'key.pem'), '--revocations', revocations];
  });

  after(async () => {
    await cluster?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('SIGHUP with an edited file closes the live sessions of a newly revoked subject, and only those', async () => {
    await writeFile(revocations, '[]\n');
    await using proxy = await startPgwardProcess([...base, '--refresh', '0']);
    const connect = async (user: string) => {
      const c = new pg.Client({ connectionString: `postgres://${user}:${await mint(key, user)}@127.0.0.1:${proxy.port}/postgres?sslmode=disable` });
      const seen: { code?: string; message?: string } = {};
      c.on('error', (e: Error & { code?: string }) => {
        if (seen.message === undefined) Object.assign(seen, { code: e.code, message: e.message });
      });
      await c.connect();
      return { c, seen };
    };
    const alice = await connect('alice');
    const bob = await connect('bob');
    try {
      await alice.c.query('begin');
      await writeFile(revocations, '- sub: alice\n  reason: offboarded\n');
      const mark = proxy.events.length;
      proxy.signal('SIGHUP');
      await proxy.waitFor('configuration reloaded', 10_000, mark);
      await until(() => alice.seen.code !== undefined, 2000, 'alice closed');
      assert.equal(alice.seen.code, '28P01');
      assert.match(alice.seen.message!, /token revoked/);
      assert.equal((await bob.c.query('select current_user as u')).rows[0].u, 'bob');
      await assert.rejects(connect('alice'), (e: Error & { code?: string }) => e.code === '28P01');
    } finally {
      await alice.c.end().catch(() => {});
      await bob.c.end().catch(() => {});
    }
  });

  it('SIGHUP turns the console on and off: "pgward" is the console, then an ordinary database again', async () => {
    await cluster.sql('create database pgward');
    const url = (u: string) => `postgres://${u}@127.0.0.1:${cluster.port}?sslmode=disable`;
    await writeFile(join(dir, 'any-db.json'), JSON.stringify({ alice: url('alice'), root: url('bob') }));
    const config = join(dir, 'reload.yaml');
    await writeFile(config, '{}\n');
    await writeFile(revocations, '[]\n');
    const args = [...base, '--backends', join(dir, 'any-db.json'), '--config', config, '--refresh', '0'];
    await using proxy = await startPgwardProcess(args);
    const database = async (user: string) => {
      const c = new pg.Client({ connectionString: `postgres://${user}:${await mint(key, user)}@127.0.0.1:${proxy.port}/pgward?sslmode=disable` });
      try {
        await c.connect();
        return (await c.query('SHOW VERSION').then((r) => r.rows[0].version as string, () => undefined)) ?? 'backend';
      } catch (err) {
        return (err as { code?: string }).code;
      } finally {
        await c.end().catch(() => {});
      }
    };
    const reload = async (text: string) => {
      await writeFile(config, text);
      const mark = proxy.events.length;
      proxy.signal('SIGHUP');
      await proxy.waitFor('configuration reloaded', 10_000, mark);
    };
    assert.equal(await database('alice'), 'backend', 'no admin: configured, pgward is a backend database');
    await reload('admin:\n  subjects: [root]\n');
    assert.equal(await database('alice'), '28000');
    assert.match(await database('root') ?? '', /^pgward \d/);
    await reload('{}\n');
    assert.equal(await database('root'), 'backend');
  });

  it('pgward check validates the admin settings and the revocation file', async () => {
    const check = (...extra: string[]) => spawnSync(process.execPath, [BIN, 'check', ...base, ...extra], { encoding: 'utf8' });
    await writeFile(revocations, '- sub: alice\n- jti: t-1\n  until: 2099-01-01T00:00:00Z\n');
    const ok = check();
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /revocations: 2 entries/);
    assert.match(ok.stdout, /admin console: off \(no admin.subjects or admin.claim\); database "pgward" is routed like any other/);
    await writeFile(join(dir, 'admin.yaml'), 'admin:\n  subjects: [root]\n');
    const on = check('--config', join(dir, 'admin.yaml'));
    assert.equal(on.status, 0, on.stderr);
    assert.match(on.stdout, /admin console: database "pgward", subjects root/);
    await writeFile(revocations, '- sub: alice\n  color: red\n');
    const bad = check();
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /revocations: .*unknown key "color"/);
    await writeFile(revocations, '[]\n');
    await writeFile(join(dir, 'cfg.yaml'), 'admin:\n  claim: role\n  subjects: nope\n');
    const badAdmin = check('--config', join(dir, 'cfg.yaml'));
    assert.equal(badAdmin.status, 2);
    assert.match(badAdmin.stderr, /admin.subjects: expected a list/);
    assert.match(badAdmin.stderr, /admin.claim and admin.value must be given together/);
  });
});
