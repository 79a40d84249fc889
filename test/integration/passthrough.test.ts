import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { PgCluster } from '../helpers/pg-cluster.js';
import { startTestProxy } from '../helpers/proxy.js';
import { RawClient } from '../helpers/raw-client.js';
import { encodeStartupMessage, fe } from '../../src/protocol/index.js';

describe('passthrough provider (pgpx parity)', () => {
  let cluster: PgCluster;
  let dir: string;

  before(async () => {
    cluster = await PgCluster.start({
      hba: ['host all all 127.0.0.1/32 scram-sha-256'],
      users: [
        { name: 'app', password: 'app-secret' },
        { name: 'other', password: 'other-secret' },
      ],
    });
    dir = await mkdtemp(join(tmpdir(), 'pgward-creds-'));
  });

  after(async () => {
    await cluster?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function script(name: string, body: string): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, `#!/bin/sh\n${body}\n`);
    await chmod(path, 0o755);
    return path;
  }

  async function currentUser(url: string): Promise<string> {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query('select current_user as u')).rows[0].u as string;
    } finally {
      await c.end();
    }
  }

  it('logs in with the output of credsCmd, run once per credsTtl', async () => {
    const counter = join(dir, 'runs');
    const cmd = await script('creds.sh', `echo run >> '${counter}'\nprintf 'app-secret\\n'`);
    await using proxy = await startTestProxy([
      '--insecure', '--auth', 'passthrough', '--backend', `${cluster.url('app')}?sslmode=disable`,
      '--credsCmd', cmd, '--credsTtl', '1h',
    ]);
    assert.equal(await currentUser(proxy.url('app')), 'app');
    assert.equal(await currentUser(proxy.url('app')), 'app');
    assert.equal((await readFile(counter, 'utf8')).trim().split('\n').length, 1, 'cached for the TTL');
    assert.ok(!proxy.logs.join('\n').includes('app-secret'), 'the credential is never logged');
  });

  it('a failing credsCmd gives the client 08001 and the operator a log line without secrets', async () => {
    const cmd = await script('broken.sh', `echo 'token-like-secret' ; echo oops >&2 ; exit 3`);
    await using proxy = await startTestProxy([
      '--insecure', '--auth', 'passthrough', '--backend', `${cluster.url('app')}?sslmode=disable`, '--credsCmd', cmd,
    ]);
    const c = new pg.Client({ connectionString: proxy.url('app') });
    await assert.rejects(c.connect(), (e: { code?: string; message: string }) => e.code === '08001' && /could not obtain backend credentials/.test(e.message));
    const logs = proxy.logs.join('\n');
    assert.match(logs, /credentials command failed/);
    assert.match(logs, /exited with status 3/);
    assert.ok(!logs.includes('token-like-secret'));
  });

  it("--no-credsOverride forwards the client's own password", async () => {
    await using proxy = await startTestProxy([
      '--insecure', '--auth', 'passthrough', '--backend', `${cluster.url('app')}?sslmode=disable`, '--no-credsOverride',
    ]);
    assert.equal(await currentUser(proxy.url('other', 'other-secret')), 'other');
    const c = new pg.Client({ connectionString: proxy.url('other', 'wrong') });
    await assert.rejects(c.connect(), (e: { code?: string }) => e.code === '28P01');
  });

  it("--ignoreUsername logs in as the URL's user whatever the client names", async () => {
    await using proxy = await startTestProxy([
      '--insecure', '--auth', 'passthrough', '--backend', `${cluster.url('app', 'app-secret')}?sslmode=disable`, '--ignoreUsername',
    ]);
    assert.equal(await currentUser(proxy.url('somebody-else')), 'app');
  });

  it("without --ignoreUsername the client's user is used", async () => {
    await using proxy = await startTestProxy([
      '--insecure', '--auth', 'passthrough', '--backend', `${cluster.url('app', 'app-secret')}?sslmode=disable`,
    ]);
    const c = new pg.Client({ connectionString: proxy.url('other') });
    // The URL's password belongs to app, so the backend refuses "other" with it.
    await assert.rejects(c.connect(), (e: { code?: string; message: string }) => e.code === '28P01' && /"other"/.test(e.message));
  });

  it('strips proxy-owned startup parameters a client tries to set', async () => {
    await using proxy = await startTestProxy([
      '--insecure', '--auth', 'passthrough', '--backend', `${cluster.url('app', 'app-secret')}?sslmode=disable`,
    ]);
    await using c = await RawClient.connect(proxy.port);
    c.write(encodeStartupMessage([['user', 'app'], ['database', 'postgres'], ['pgward.remote_addr', '6.6.6.6'], ['application_name', 'kept']]));
    await new Promise((r) => setTimeout(r, 500));
    c.write(fe.query("select coalesce(current_setting('pgward.remote_addr', true), '<unset>'), current_setting('application_name')").raw);
    await new Promise((r) => setTimeout(r, 500));
    const row = c.messages.find((m) => m.type === 'DataRow');
    assert.ok(row, 'got a row');
    const values = (row.body() as { values: (Buffer | null)[] }).values.map((v) => v?.toString());
    assert.deepEqual(values, ['<unset>', 'kept']);
  });
});
