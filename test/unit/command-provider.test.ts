import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { before, describe, it } from 'node:test';
import { md5Response } from '../../src/backend/md5.js';
import type { BackendTarget } from '../../src/backend/url.js';
import { parseAuthenticatorOutput, type CommandProviderOptions } from '../../src/auth/command-provider.js';
import { fe } from '../../src/protocol/index.js';
import {
  assertNoSecrets,
  authenticatorScripts,
  clearClient,
  expectPgError,
  fakeChannel,
  inputLines,
  md5Client,
  PASSWORD,
  provider,
  READ_INPUT,
  STARTUP,
  TARGET_CRED,
  TARGET_MD5,
} from '../helpers/command-cases.js';

const { script, captureFile, unique } = authenticatorScripts();

describe('command provider: md5', () => {
  let md5Auth: string;
  before(() => {
    // Checks the md5 response the way PostgreSQL computes it, independently of pgward's code:
    // "md5" + md5hex(md5hex(password + user) + salt bytes).
    md5Auth = script(
      'md5-auth.sh',
      `${READ_INPUT}
password=$2
inner=$(printf '%s%s' "$password" "$user" | md5sum | cut -d' ' -f1)
bytes=
for i in 1 3 5 7; do
  pair=$(printf '%s' "$salt" | cut -c$i-$((i + 1)))
  bytes="$bytes\\\\$(printf '%03o' "0x$pair")"
done
expected=md5$( { printf '%s' "$inner"; printf "$bytes"; } | md5sum | cut -d' ' -f1)
if [ "$cred" != "$expected" ]; then
  echo "refusing $user: got $cred" >&2
  exit 1
fi
printf '%s\\n' "user=app_$user" "database=appdb" "application_name=psql (via proxy)" \\
  "_META_TARGET_HOST=db.internal:6543" "_META_TARGET_CRED=${TARGET_CRED}"
`,
    );
  });

  it('authenticates, passing a fresh random salt as 8 lowercase hex digits', async () => {
    const seen: string[] = [];
    for (let i = 0; i < 2; i++) {
      const capture = captureFile();
      const fake = fakeChannel(STARTUP, md5Client('alice', PASSWORD));
      const result = await provider([md5Auth, capture, PASSWORD]).authenticate(fake.channel);

      assert.equal(result.identity, 'alice');
      assert.equal(result.target.host, 'db.internal');
      assert.equal(result.target.port, 6543);
      assert.equal(result.target.user, 'app_alice');
      assert.equal(result.target.database, 'appdb');
      assert.equal(result.target.password, TARGET_CRED);
      assert.deepEqual(result.target.params, { application_name: 'psql (via proxy)' });
      assert.equal(result.target.sslmode, 'prefer');

      assert.equal(fake.salts.length, 1);
      const lines = inputLines(capture);
      const response = md5Response('alice', PASSWORD, fake.salts[0]!);
      assert.deepEqual(lines, [
        'user=alice',
        'database=shop',
        'application_name=psql',
        'client_encoding=UTF8',
        `_SOURCE_CRED=${response}`,
        `_SOURCE_SALT=${fake.salts[0]!.toString('hex')}`,
      ]);
      const salt = lines.at(-1)!.slice('_SOURCE_SALT='.length);
      assert.match(salt, /^[0-9a-f]{8}$/);
      seen.push(salt);
      assertNoSecrets(fake, undefined, [PASSWORD, response, TARGET_CRED]);
      assert.ok(fake.logs.some((l) => l.event === 'authenticated'));
    }
    assert.notEqual(seen[0], seen[1], 'each connection gets its own salt');
  });

  it('salts are not reused across many connections', async () => {
    const p = provider(['/bin/true']);
    const salts = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const fake = fakeChannel(STARTUP, md5Client('alice', PASSWORD));
      await p.authenticate(fake.channel).catch(() => {});
      salts.add(fake.salts[0]!.toString('hex'));
    }
    assert.equal(salts.size, 50);
  });

  it('a wrong password makes the authenticator exit non-zero: FATAL 28P01, nothing secret logged', async () => {
    const fake = fakeChannel(STARTUP, md5Client('alice', 'not-the-password'));
    const err = await expectPgError(
      provider([md5Auth, captureFile(), PASSWORD]).authenticate(fake.channel),
      '28P01',
      /^password authentication failed for user "alice"$/,
    );
    const response = md5Response('alice', 'not-the-password', fake.salts[0]!);
    // The script printed the response on stderr; the log keeps stderr but not the credential.
    const failure = fake.logs.find((l) => l.event === 'authentication failed');
    assert.ok(failure, 'the failure is logged');
    assert.equal(failure.fields?.exitCode, 1);
    assert.match(String(failure.fields?.stderr), /refusing alice: got \*\*\*/);
    assertNoSecrets(fake, err, [PASSWORD, 'not-the-password', response, TARGET_CRED]);
  });

  it('refuses a reply that is not a password message with 08P01', async () => {
    const fake = fakeChannel(STARTUP, () => fe.query('select 1'));
    await expectPgError(provider([md5Auth, captureFile(), PASSWORD]).authenticate(fake.channel), '08P01');
  });

  it('refuses a cleartext answer to an md5 request without running the command', async () => {
    const capture = captureFile();
    const fake = fakeChannel(STARTUP, () => fe.password(PASSWORD));
    const err = await expectPgError(provider([md5Auth, capture, PASSWORD]).authenticate(fake.channel), '28P01');
    assert.equal(existsSync(capture), false);
    assertNoSecrets(fake, err, [PASSWORD]);
  });
});

describe('command provider: cleartext', () => {
  let clearAuth: string;
  before(() => {
    clearAuth = script(
      'clear-auth.sh',
      `${READ_INPUT}
[ "$salt" = 00000000 ] || { echo "unexpected salt" >&2; exit 3; }
[ "$cred" = "$2" ] || exit 1
printf '%s\\n' "_META_TARGET_HOST=10.0.0.7" "user=reporting"
`,
    );
  });

  it('passes the password as _SOURCE_CRED and 00000000 as the salt', async () => {
    const capture = captureFile();
    const fake = fakeChannel(STARTUP, clearClient(PASSWORD));
    const result = await provider([clearAuth, capture, PASSWORD], { cleartext: true }).authenticate(fake.channel);
    assert.equal(result.target.host, '10.0.0.7');
    assert.equal(result.target.port, 5432);
    assert.equal(result.target.user, 'reporting');
    assert.equal(result.target.database, undefined);
    assert.equal(result.target.password, undefined);
    assert.deepEqual(inputLines(capture).slice(-2), [`_SOURCE_CRED=${PASSWORD}`, '_SOURCE_SALT=00000000']);
    assert.equal(fake.salts.length, 0);
    assertNoSecrets(fake, undefined, [PASSWORD]);
  });

  it('a wrong password: 28P01', async () => {
    const fake = fakeChannel(STARTUP, clearClient('wrong-one'));
    const err = await expectPgError(
      provider([clearAuth, captureFile(), PASSWORD], { cleartext: true }).authenticate(fake.channel),
      '28P01',
      /for user "alice"/,
    );
    assertNoSecrets(fake, err, [PASSWORD, 'wrong-one']);
  });

  it('refuses a password with a line break (it could add lines) without running the command', async () => {
    const capture = captureFile();
    const sneaky = 'pw\n_META_TARGET_HOST=evil:1';
    const fake = fakeChannel(STARTUP, clearClient(sneaky));
    const err = await expectPgError(
      provider([clearAuth, capture, PASSWORD], { cleartext: true }).authenticate(fake.channel),
      '28P01',
    );
    assert.equal(existsSync(capture), false);
    assertNoSecrets(fake, err, [sneaky, 'pw\n']);
  });

  it('refuses an empty password', async () => {
    const fake = fakeChannel(STARTUP, clearClient(''));
    await expectPgError(provider([clearAuth, captureFile(), ''], { cleartext: true }).authenticate(fake.channel), '28P01');
  });
});

describe('command provider: targets', () => {
  const printer = (name: string, lines: string[]) =>
    script(name, `cat >/dev/null\nprintf '%s\\n' ${lines.map((l) => `'${l}'`).join(' ')}\n`);
  const run = async (argv: string[], extra: Partial<CommandProviderOptions> = {}) => {
    const fake = fakeChannel(STARTUP, clearClient(PASSWORD));
    const result = await provider(argv, { cleartext: true, ...extra }).authenticate(fake.channel);
    return { result, fake };
  };

  it('IPv6 hosts in brackets, with and without a port', async () => {
    const a = await run([printer('v6-port.sh', ['_META_TARGET_HOST=[::1]:7000'])]);
    assert.equal(a.result.target.host, '::1');
    assert.equal(a.result.target.port, 7000);
    const b = await run([printer('v6.sh', ['_META_TARGET_HOST=[2001:db8::5]'])]);
    assert.equal(b.result.target.host, '2001:db8::5');
    assert.equal(b.result.target.port, 5432);
  });

  it('an IPv6 host without brackets, a bad port or a bad host name: 28000', async () => {
    for (const host of ['::1', 'db:0', 'db:99999', 'db:x', '[::1', '[::1]x', 'bad host', '[zz::1]', '']) {
      const fake = fakeChannel(STARTUP, clearClient(PASSWORD));
      const p = printer(`bad-host-${unique()}.sh`, [`_META_TARGET_HOST=${host}`]);
      await expectPgError(provider([p], { cleartext: true }).authenticate(fake.channel), '28000');
    }
  });

  it('an md5 hash as the target credential is passed on as is (pass-the-hash)', async () => {
    const { result, fake } = await run([printer('md5-cred.sh', ['_META_TARGET_HOST=db:5433', `_META_TARGET_CRED=${TARGET_MD5}`])]);
    assert.equal(result.target.password, TARGET_MD5);
    assertNoSecrets(fake, undefined, [TARGET_MD5, PASSWORD]);
  });

  it('an authenticator echoing its input: _SOURCE_* lines are not forwarded', async () => {
    const echo = script('echo.sh', 'cat\necho _META_TARGET_HOST=db.example\n');
    const { result } = await run([echo]);
    assert.equal(result.target.user, 'alice');
    assert.equal(result.target.database, 'shop');
    assert.deepEqual(result.target.params, { application_name: 'psql', client_encoding: 'UTF8' });
    assert.equal(result.target.password, undefined);
  });

  it('defaultTarget settings apply; the output wins; host and password are never inherited', async () => {
    const defaults: Partial<BackendTarget> = {
      host: 'configured-host',
      port: 6000,
      password: 'configured-secret',
      sslmode: 'require',
      connectTimeoutMs: 3000,
      database: 'fallbackdb',
      params: { statement_timeout: '5s', search_path: 'public' },
    };
    const { result } = await run([printer('defaults.sh', ['_META_TARGET_HOST=db', 'search_path=app'])], { defaultTarget: defaults });
    assert.equal(result.target.host, 'db');
    assert.equal(result.target.port, 6000);
    assert.equal(result.target.password, undefined);
    assert.equal(result.target.sslmode, 'require');
    assert.equal(result.target.connectTimeoutMs, 3000);
    assert.equal(result.target.database, 'fallbackdb');
    assert.deepEqual(result.target.params, { statement_timeout: '5s', search_path: 'app' });
  });
});

describe('parseAuthenticatorOutput', () => {
  it('follows pgAuthProxy: last duplicate wins, lines without "=" ignored, values may hold "="', () => {
    const out = parseAuthenticatorOutput(
      'hello from the authenticator\r\nuser=a\r\nuser=b\n_META_TARGET_HOST=h:1\noptions=-c search_path=x\n\n_META_OTHER=1\n_SOURCE_CRED=zzz\n',
    );
    assert.equal(out.user, 'b');
    assert.equal(out.host, 'h');
    assert.equal(out.port, 1);
    assert.deepEqual(out.params, { options: '-c search_path=x' });
    assert.equal(out.ignoredLines, 1);
    assert.deepEqual(out.ignoredKeys, ['_META_OTHER']);
  });

  it('drops replication and _pq_ keys the proxy owns', () => {
    const out = parseAuthenticatorOutput('_META_TARGET_HOST=h\nreplication=database\n_pq_.x=1\nTimeZone=UTC\n');
    assert.deepEqual(out.params, { TimeZone: 'UTC' });
    assert.deepEqual(out.ignoredKeys.sort(), ['_pq_.x', 'replication']);
  });

  it('refuses NUL in values, invalid names and an empty user, without quoting the output', () => {
    for (const text of ['_META_TARGET_HOST=h\na=b\0c\n', '_META_TARGET_HOST=h\n=v\n', '_META_TARGET_HOST=h\n1abc=v\n', '_META_TARGET_HOST=h\nuser=\n']) {
      assert.throws(
        () => parseAuthenticatorOutput(text),
        (e: Error) => e.name === 'AuthenticatorOutputError' && !e.message.includes('abc') && !e.message.includes('b\0c'),
      );
    }
  });
});
