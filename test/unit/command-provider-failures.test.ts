import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { encodeAuthenticatorInput } from '../../src/auth/command-provider.js';
import { assertNoSecrets, authenticatorScripts, clearClient, expectPgError, fakeChannel, PASSWORD, provider, READ_INPUT, STARTUP, TARGET_CRED } from '../helpers/command-cases.js';

const { script, captureFile, folder } = authenticatorScripts();

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
      provider([join(folder(), 'does-not-exist')], { cleartext: true }).authenticate(fake.channel),
      '08001',
      /could not be run/,
    );
    assert.ok(!err.message.includes(folder()));
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
