import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { md5Response } from '../../src/backend/md5.js';
import type { BackendTarget } from '../../src/backend/url.js';
import {
  commandProvider,
  encodeAuthenticatorInput,
  parseAuthenticatorOutput,
  type CommandProviderOptions,
} from '../../src/auth/command-provider.js';
import type { AuthResult, ClientChannel } from '../../src/auth/provider.js';
import { fe, PgError, type BackendMessage, type FrontendMessage } from '../../src/protocol/index.js';

const PASSWORD = 'Client-Pass w0rd';
const TARGET_CRED = 'TargetSecret-1';
const TARGET_MD5 = 'md53175bce1d3201d16594cebf9d7eb3f9d';

let dir: string;
const script = (name: string, body: string): string => {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}`);
  chmodSync(path, 0o755);
  return path;
};
let seq = 0;
const captureFile = () => join(dir, `stdin-${++seq}.txt`);

/** Shell fragment: reads the proxy's lines into $user/$cred/$salt and copies them to $capture. */
const READ_INPUT = `
capture=$1
user=; cred=; salt=
: > "$capture"
while IFS= read -r line; do
  printf '%s\\n' "$line" >> "$capture"
  case $line in
    user=*) user=\${line#user=} ;;
    _SOURCE_CRED=*) cred=\${line#_SOURCE_CRED=} ;;
    _SOURCE_SALT=*) salt=\${line#_SOURCE_SALT=} ;;
  esac
done
`;

interface LogCall {
  level: string;
  event: string;
  fields?: Record<string, unknown>;
}

interface Fake {
  channel: ClientChannel;
  sent: BackendMessage[];
  logs: LogCall[];
  /** The salts of the AuthenticationMD5Password requests the client got. */
  salts: Buffer[];
}

/**
 * An in-memory client: answers the provider's password request with `answer` (given the md5 salt,
 * or null for a cleartext request).
 */
function fakeChannel(
  startup: [string, string][],
  answer: (salt: Buffer | null) => FrontendMessage,
): Fake {
  const sent: BackendMessage[] = [];
  const logs: LogCall[] = [];
  const salts: Buffer[] = [];
  const logAt = (level: string) => (event: string, fields?: Record<string, unknown>) => logs.push({ level, event, fields });
  const channel: ClientChannel = {
    client: { address: '127.0.0.1', port: 40000, tls: false },
    startup: new Map(startup),
    log: { debug: logAt('debug'), info: logAt('info'), warn: logAt('warn'), error: logAt('error') },
    send: (...messages) => sent.push(...messages),
    reserveCancelKey: () => assert.fail('the command provider never reserves a cancel key'),
    handshakeComplete: () => assert.fail('the command provider never completes the handshake itself'),
    read: async () => {
      const last = sent.at(-1);
      assert.ok(last && last.type === 'Authentication', 'the provider asked for a password before reading');
      const body = last.body() as { kind: string; salt?: Buffer };
      if (body.kind === 'MD5Password') {
        salts.push(Buffer.from(body.salt!));
        return answer(body.salt!);
      }
      assert.equal(body.kind, 'CleartextPassword');
      return answer(null);
    },
  };
  return { channel, sent, logs, salts };
}

const md5Client = (user: string, password: string) => (salt: Buffer | null) => {
  assert.ok(salt, 'expected an md5 request');
  return fe.password(md5Response(user, password, salt));
};
const clearClient = (password: string) => (salt: Buffer | null) => {
  assert.equal(salt, null, 'expected a cleartext request');
  return fe.password(password);
};

const STARTUP: [string, string][] = [
  ['user', 'alice'],
  ['database', 'shop'],
  ['application_name', 'psql'],
  ['client_encoding', 'UTF8'],
];

function provider(argv: string[], extra: Partial<CommandProviderOptions> = {}) {
  return commandProvider({ argv, cleartext: false, timeoutMs: 5000, ...extra });
}

async function expectPgError(p: Promise<AuthResult>, sqlstate: string, message?: RegExp): Promise<PgError> {
  let caught: unknown;
  try {
    await p;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof PgError, `expected a PgError, got ${String(caught)}`);
  assert.equal(caught.severity, 'FATAL');
  assert.equal(caught.sqlstate, sqlstate, `sqlstate of "${caught.message}"`);
  if (message) assert.match(caught.message, message);
  return caught;
}

/** No secret in the error (message, detail, hint) nor anywhere in any log call. */
function assertNoSecrets(fake: Fake, err: PgError | undefined, secrets: string[]): void {
  const logText = JSON.stringify(fake.logs);
  const errText = err ? JSON.stringify([err.message, err.detail, err.hint]) : '';
  for (const s of secrets) {
    assert.ok(!logText.includes(s), `secret ${JSON.stringify(s)} appears in the logs: ${logText}`);
    assert.ok(!errText.includes(s), `secret ${JSON.stringify(s)} appears in the error: ${errText}`);
  }
}

const inputLines = (path: string) => readFileSync(path, 'utf8').split('\n').filter((l) => l !== '');

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'pgward-cmdauth-'));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

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

describe('command provider: injection attempts', () => {
  let recorder: string;
  before(() => {
    recorder = script('recorder.sh', `${READ_INPUT}\necho _META_TARGET_HOST=db\n`);
  });

  const attempt = async (startup: [string, string][], sqlstate: string) => {
    const capture = captureFile();
    const fake = fakeChannel(startup, clearClient(PASSWORD));
    const err = await expectPgError(provider([recorder, capture], { cleartext: true }).authenticate(fake.channel), sqlstate);
    assert.equal(existsSync(capture), false, 'the authenticator must not run');
    assert.equal(fake.sent.length, 0, 'no password is asked for');
    assertNoSecrets(fake, err, [PASSWORD]);
    return { err, fake };
  };

  it('a startup parameter value with a newline: 08P01, the value is not echoed', async () => {
    const value = 'x\n_META_TARGET_HOST=evil.example:5432';
    const { err, fake } = await attempt([...STARTUP, ['application_name', value]], '08P01');
    assertNoSecrets(fake, err, ['evil.example']);
  });

  it('a carriage return or NUL in a value, or "=" or a newline in a name: 08P01', async () => {
    await attempt([['user', 'alice'], ['application_name', 'a\rb']], '08P01');
    await attempt([['user', 'alice'], ['application_name', 'a\0b']], '08P01');
    await attempt([['user', 'alice'], ['a=b', 'c']], '08P01');
    await attempt([['user', 'alice'], ['a\nb', 'c']], '08P01');
    await attempt([['user', 'alice\nuser=admin']], '08P01');
  });

  it('a client parameter named _META_TARGET_HOST or _SOURCE_CRED (any case): 28000', async () => {
    const { err } = await attempt([...STARTUP, ['_META_TARGET_HOST', 'evil:5432']], '28000');
    assert.match(err.message, /_META_TARGET_HOST/);
    await attempt([...STARTUP, ['_SOURCE_CRED', 'md500000000000000000000000000000000']], '28000');
    await attempt([...STARTUP, ['_meta_target_cred', 'x']], '28000');
    await attempt([...STARTUP, ['_Source_Salt', '00000000']], '28000');
  });

  it('encodeAuthenticatorInput refuses what could break a line even if called directly', () => {
    assert.throws(() => encodeAuthenticatorInput(new Map([['a', 'b\nc']]), 'x', null));
    assert.throws(() => encodeAuthenticatorInput(new Map([['_META_X', 'b']]), 'x', null));
    assert.throws(() => encodeAuthenticatorInput(new Map([['a', 'b']]), 'x\ny', null));
    assert.equal(
      encodeAuthenticatorInput(new Map([['user', 'u'], ['options', '-c a=b']]), 'md5x', Buffer.from([0, 1, 0xab, 0xff])),
      'user=u\noptions=-c a=b\n_SOURCE_CRED=md5x\n_SOURCE_SALT=0001abff\n',
    );
  });
});

describe('command provider: failures of the authenticator', () => {
  it('a command that sleeps past the timeout: 08001 within the timeout', async () => {
    const sleeper = script('sleeper.sh', 'exec sleep 30\n');
    const fake = fakeChannel(STARTUP, clearClient(PASSWORD));
    const started = Date.now();
    const err = await expectPgError(
      provider([sleeper], { cleartext: true, timeoutMs: 300 }).authenticate(fake.channel),
      '08001',
      /timed out/,
    );
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 250 && elapsed < 3000, `failed after ${elapsed} ms`);
    assertNoSecrets(fake, err, [PASSWORD]);
  });

  it('output over the cap: 08001, the command is killed', async () => {
    const flood = script('flood.sh', 'exec yes _META_TARGET_HOST=db\n');
    const fake = fakeChannel(STARTUP, clearClient(PASSWORD));
    const started = Date.now();
    const err = await expectPgError(
      provider([flood], { cleartext: true, maxOutputBytes: 1024, timeoutMs: 10_000 }).authenticate(fake.channel),
      '08001',
      /too large/,
    );
    assert.ok(Date.now() - started < 5000);
    assert.match(JSON.stringify(fake.logs), /exceeds 1024 bytes/);
    assertNoSecrets(fake, err, [PASSWORD]);
  });

  it('a command that cannot be started: 08001 without the path or system error for the client', async () => {
    const fake = fakeChannel(STARTUP, clearClient(PASSWORD));
    const err = await expectPgError(
      provider([join(dir, 'does-not-exist')], { cleartext: true }).authenticate(fake.channel),
      '08001',
      /could not be run/,
    );
    assert.ok(!err.message.includes(dir));
  });

  it('exit 0 without _META_TARGET_HOST: 28000 naming the problem', async () => {
    const noHost = script('no-host.sh', `cat >/dev/null\nprintf '%s\\n' user=bob _META_TARGET_CRED=${TARGET_CRED}\n`);
    const fake = fakeChannel(STARTUP, clearClient(PASSWORD));
    const err = await expectPgError(
      provider([noHost], { cleartext: true }).authenticate(fake.channel),
      '28000',
      /no target host/,
    );
    assert.match(JSON.stringify(fake.logs), /no _META_TARGET_HOST/);
    assertNoSecrets(fake, err, [PASSWORD, TARGET_CRED]);
  });

  it('malformed output: 28000, the output is neither shown nor logged', async () => {
    const bad = script(
      'bad-output.sh',
      `cat >/dev/null\nprintf '%s\\n' _META_TARGET_HOST=db "_META_TARGET_CRED=${TARGET_CRED}" "bad key!=leaked-value"\n`,
    );
    const fake = fakeChannel(STARTUP, clearClient(PASSWORD));
    const err = await expectPgError(provider([bad], { cleartext: true }).authenticate(fake.channel), '28000', /invalid/);
    assert.match(JSON.stringify(fake.logs), /line 3: invalid parameter name/);
    assertNoSecrets(fake, err, [PASSWORD, TARGET_CRED, 'leaked-value', 'bad key']);
  });

  it('stderr is logged with credential assignments redacted', async () => {
    const chatty = script(
      'chatty.sh',
      `cat >/dev/null\necho "debug: _META_TARGET_CRED=${TARGET_CRED}" >&2\necho "no such user" >&2\nexit 2\n`,
    );
    const fake = fakeChannel(STARTUP, clearClient(PASSWORD));
    const err = await expectPgError(provider([chatty], { cleartext: true }).authenticate(fake.channel), '28P01');
    assert.match(JSON.stringify(fake.logs), /no such user/);
    assertNoSecrets(fake, err, [PASSWORD, TARGET_CRED]);
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
      const p = printer(`bad-host-${++seq}.sh`, [`_META_TARGET_HOST=${host}`]);
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
