/** `pgward keygen` and `pgward token`, in process and as the real CLI, for their tests. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';
import { createLocalJWKSet, importSPKI, jwtVerify, type JSONWebKeySet, type JWTVerifyResult } from 'jose';
import type { runKeygen } from '../../src/cli/keygen.js';

// dist/test/helpers/ → the repository root
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = join(ROOT, 'bin', 'pgward.js');

export const ALGS = ['EdDSA', 'ES256', 'ES384', 'RS256', 'PS256'] as const;
export const KTY: Record<(typeof ALGS)[number], { kty: string; crv?: string }> = {
  EdDSA: { kty: 'OKP', crv: 'Ed25519' },
  ES256: { kty: 'EC', crv: 'P-256' },
  ES384: { kty: 'EC', crv: 'P-384' },
  RS256: { kty: 'RSA' },
  PS256: { kty: 'RSA' },
};

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real CLI as a child process. */
export function cli(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, timeout: 30_000 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') return reject(error);
      resolve({ code: typeof error?.code === 'number' ? error.code : 0, stdout, stderr });
    });
  });
}

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer | string, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

/** Calls a command function in-process with captured output. */
export async function call(fn: typeof runKeygen, args: string[]): Promise<Run> {
  const out = new Capture();
  const err = new Capture();
  const code = await fn(args, out, err);
  return { code, stdout: out.text, stderr: err.text };
}

export async function readJwks(dir: string): Promise<JSONWebKeySet> {
  return JSON.parse(await readFile(join(dir, 'jwks.json'), 'utf8')) as JSONWebKeySet;
}

export async function verifyBoth(token: string, dir: string, alg: string): Promise<JWTVerifyResult> {
  const jwks = await readJwks(dir);
  const viaPem = await jwtVerify(token, await importSPKI(await readFile(join(dir, 'public.pem'), 'utf8'), alg), {
    algorithms: [alg],
  });
  const viaJwks = await jwtVerify(token, createLocalJWKSet(jwks), { algorithms: [alg] });
  assert.deepEqual(viaJwks.payload, viaPem.payload);
  return viaPem;
}

export function assertOneLine(stderr: string): void {
  assert.ok(stderr.trim().length > 0, 'a message on stderr');
  assert.equal(stderr.trim().split('\n').length, 1, `one line, got: ${stderr}`);
  assert.ok(!/at .*\(.*:\d+:\d+\)/.test(stderr), 'no stack trace');
}

/** Call inside a describe: a temporary folder for its tests (removed after them); each call of the result names a new folder in it. */
export function freshFolders(): () => string {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'pgward-cli-token-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });
  let n = 0;
  return () => join(tmp, `d${n++}`);
}
