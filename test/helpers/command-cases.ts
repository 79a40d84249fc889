/** An in-memory client and shell-script authenticators for the command auth provider's tests. */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { commandProvider, type CommandProviderOptions } from '../../src/auth/command-provider.js';
import type { AuthResult, ClientChannel } from '../../src/auth/provider.js';
import { md5Response } from '../../src/backend/md5.js';
import { fe, PgError, type BackendMessage, type FrontendMessage } from '../../src/protocol/index.js';

export const PASSWORD = 'Client-Pass w0rd';
export const TARGET_CRED = 'TargetSecret-1';
export const TARGET_MD5 = 'md53175bce1d3201d16594cebf9d7eb3f9d';

/**
 * Call once at the top of a test file: a temporary folder for the file's authenticator scripts
 * (removed after its tests); `script` writes an executable shell script there, `captureFile`
 * names a fresh file for a script to copy its input into.
 */
export function authenticatorScripts() {
  let dir: string;
  let seq = 0;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'pgward-cmdauth-'));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  const script = (name: string, body: string): string => {
    const path = join(dir, name);
    writeFileSync(path, `#!/bin/sh\n${body}`);
    chmodSync(path, 0o755);
    return path;
  };
  const captureFile = () => join(dir, `stdin-${++seq}.txt`);
  /** The folder itself (a test checks an error does not name it). */
  const folder = () => dir;
  /** A number not used before in this file, for names that must differ. */
  const unique = () => ++seq;
  return { script, captureFile, folder, unique };
}

/** Shell fragment: reads the proxy's lines into $user/$cred/$salt and copies them to $capture. */
export const READ_INPUT = `
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

export interface LogCall {
  level: string;
  event: string;
  fields?: Record<string, unknown>;
}

export interface Fake {
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
export function fakeChannel(
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

export const md5Client = (user: string, password: string) => (salt: Buffer | null) => {
  assert.ok(salt, 'expected an md5 request');
  return fe.password(md5Response(user, password, salt));
};
export const clearClient = (password: string) => (salt: Buffer | null) => {
  assert.equal(salt, null, 'expected a cleartext request');
  return fe.password(password);
};

export const STARTUP: [string, string][] = [
  ['user', 'alice'],
  ['database', 'shop'],
  ['application_name', 'psql'],
  ['client_encoding', 'UTF8'],
];

export function provider(argv: string[], extra: Partial<CommandProviderOptions> = {}) {
  return commandProvider({ argv, cleartext: false, timeoutMs: 5000, ...extra });
}

export async function expectPgError(p: Promise<AuthResult>, sqlstate: string, message?: RegExp): Promise<PgError> {
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
export function assertNoSecrets(fake: Fake, err: PgError | undefined, secrets: string[]): void {
  const logText = JSON.stringify(fake.logs);
  const errText = err ? JSON.stringify([err.message, err.detail, err.hint]) : '';
  for (const s of secrets) {
    assert.ok(!logText.includes(s), `secret ${JSON.stringify(s)} appears in the logs: ${logText}`);
    assert.ok(!errText.includes(s), `secret ${JSON.stringify(s)} appears in the error: ${errText}`);
  }
}

export const inputLines = (path: string) => readFileSync(path, 'utf8').split('\n').filter((l) => l !== '');
