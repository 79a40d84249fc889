import { randomBytes } from 'node:crypto';
import { chmod, mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, exportPKCS8, exportSPKI, generateKeyPair } from 'jose';

/** The signature algorithms `keygen` can create keys for (and `token` can sign with). */
export const KEY_ALGS = ['EdDSA', 'ES256', 'ES384', 'RS256', 'PS256'] as const;
export type KeyAlg = (typeof KEY_ALGS)[number];

/** Canonical spelling of an algorithm name given on the command line (case-insensitive; `Ed25519` means EdDSA). */
export function canonicalAlg(text: string): KeyAlg | undefined {
  const t = text.trim().toLowerCase();
  if (t === 'ed25519') return 'EdDSA';
  return KEY_ALGS.find((a) => a.toLowerCase() === t);
}

const KEYGEN_USAGE = `Usage: pgward keygen [--alg EdDSA|ES256|ES384|RS256|PS256] [--out DIR] [--force]

Creates a signing key pair for pgward tokens and writes, into DIR (default ".", created if missing):
  private.pem   the private key, PKCS#8 PEM, mode 0600 — keep it secret (pgward token --key)
  public.pem    the public key, SPKI PEM                  (pgward start --signingKeys)
  jwks.json     the public key as a JWK Set, kid = RFC 7638 thumbprint, with alg and use "sig"

Flags:
  --alg ALG     EdDSA (Ed25519, the default), ES256 (P-256), ES384 (P-384), RS256 or PS256 (RSA 2048)
  --out DIR     where to write the files (default ".")
  --force       overwrite existing files (without it, keygen refuses and exits 2)

Example:
  pgward keygen --alg ES256 --out ./keys
  pgward start --signingKeys ./keys/jwks.json --backends backends.json --insecure
  psql "host=127.0.0.1 port=13013 user=alice password=$(pgward token --key ./keys/private.pem --sub alice)"
`;

/** A usage problem: reported as one line on stderr, exit code 2. */
export class UsageError extends Error {}

export interface FlagSpec {
  /** Takes a value (`--name VALUE` or `--name=VALUE`); otherwise a boolean switch. */
  value: boolean;
  /** May be given more than once (values are collected in order). */
  repeatable?: boolean;
}

export interface ParsedFlags {
  values: Map<string, string[]>;
  switches: Set<string>;
}

/**
 * A small strict flag parser shared by `keygen` and `token`: `--name VALUE`, `--name=VALUE`,
 * boolean switches, repeatable flags. Unknown flags, positional arguments, a missing value and a
 * non-repeatable flag given twice are UsageErrors.
 */
export function parseFlags(argv: readonly string[], spec: Record<string, FlagSpec>): ParsedFlags {
  const values = new Map<string, string[]>();
  const switches = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--') || arg === '--') throw new UsageError(`unexpected argument "${arg}"`);
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    const def = Object.hasOwn(spec, name) ? spec[name] : undefined;
    if (def === undefined) throw new UsageError(`unknown flag --${name}`);
    if (!def.value) {
      if (eq !== -1) throw new UsageError(`--${name} takes no value`);
      switches.add(name);
      continue;
    }
    let value: string;
    if (eq !== -1) {
      value = arg.slice(eq + 1);
    } else {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) {
        throw new UsageError(`--${name} needs a value${next === undefined ? '' : ` (write --${name}=VALUE for a value starting with "--")`}`);
      }
      value = next;
      i++;
    }
    const list = values.get(name) ?? [];
    if (list.length > 0 && !def.repeatable) throw new UsageError(`--${name} given more than once`);
    list.push(value);
    values.set(name, list);
  }
  return { values, switches };
}

/** True when argv asks for help (`--help` or `-h` anywhere). */
export function wantsHelp(argv: readonly string[]): boolean {
  return argv.includes('--help') || argv.includes('-h');
}

const FILES = ['private.pem', 'public.pem', 'jwks.json'] as const;

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * Writes a file atomically (temporary file + rename), so a reader never sees half a key and the
 * private key is never, even briefly, readable by others. Without `overwrite` an existing file is
 * never replaced.
 */
async function writeFileSafely(path: string, data: string, mode: number, overwrite: boolean): Promise<void> {
  if (!overwrite) {
    await writeFile(path, data, { mode, flag: 'wx' });
    await chmod(path, mode);
    return;
  }
  const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  try {
    await writeFile(tmp, data, { mode, flag: 'wx' });
    await chmod(tmp, mode);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

function errText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ? `${e.code}: ${e.message.replace(/^[A-Z]+: /, '')}` : String(e.message ?? err);
}

/** `pgward keygen`: returns the exit code (0 ok, 2 bad usage or refusing to overwrite, 1 I/O failure). */
export async function runKeygen(
  argv: string[],
  out: NodeJS.WritableStream = process.stdout,
  err: NodeJS.WritableStream = process.stderr,
): Promise<number> {
  if (wantsHelp(argv)) {
    out.write(KEYGEN_USAGE);
    return 0;
  }
  let alg: KeyAlg = 'EdDSA';
  let dir = '.';
  let force = false;
  try {
    const flags = parseFlags(argv, { alg: { value: true }, out: { value: true }, force: { value: false } });
    const algText = flags.values.get('alg')?.[0];
    if (algText !== undefined) {
      const a = canonicalAlg(algText);
      if (a === undefined) throw new UsageError(`--alg "${algText}" is not supported (use one of ${KEY_ALGS.join(', ')})`);
      alg = a;
    }
    const outText = flags.values.get('out')?.[0];
    if (outText !== undefined) {
      if (outText.trim() === '') throw new UsageError('--out needs a directory');
      dir = outText;
    }
    force = flags.switches.has('force');
  } catch (e) {
    if (e instanceof UsageError) {
      err.write(`pgward keygen: ${e.message} (see pgward keygen --help)\n`);
      return 2;
    }
    throw e;
  }

  const paths = Object.fromEntries(FILES.map((f) => [f, join(dir, f)])) as Record<(typeof FILES)[number], string>;

  try {
    await mkdir(dir, { recursive: true });
  } catch (e) {
    err.write(`pgward keygen: cannot create directory ${dir}: ${errText(e)}\n`);
    return (e as NodeJS.ErrnoException).code === 'EEXIST' || (e as NodeJS.ErrnoException).code === 'ENOTDIR' ? 2 : 1;
  }
  if (!force) {
    const present: string[] = [];
    for (const f of FILES) if (await exists(paths[f])) present.push(paths[f]);
    if (present.length > 0) {
      err.write(`pgward keygen: refusing to overwrite existing ${present.join(', ')} (use --force to replace)\n`);
      return 2;
    }
  }

  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const pkcs8 = await exportPKCS8(privateKey);
  const spki = await exportSPKI(publicKey);
  const jwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(jwk, 'sha256');
  const jwks = { keys: [{ ...jwk, kid, alg, use: 'sig' }] };

  let current: string = paths['private.pem'];
  try {
    await writeFileSafely(current, pkcs8, 0o600, force);
    current = paths['public.pem'];
    await writeFileSafely(current, spki, 0o644, force);
    current = paths['jwks.json'];
    await writeFileSafely(current, JSON.stringify(jwks, null, 2) + '\n', 0o644, force);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
      err.write(`pgward keygen: refusing to overwrite existing ${current} (use --force to replace)\n`);
      return 2;
    }
    err.write(`pgward keygen: cannot write ${current}: ${errText(e)}\n`);
    return 1;
  }

  out.write(
    `kid:         ${kid}\n` +
      `alg:         ${alg}\n` +
      `private key: ${paths['private.pem']} (mode 0600, keep it secret)\n` +
      `public key:  ${paths['public.pem']}\n` +
      `JWKS:        ${paths['jwks.json']}\n` +
      `\nMint a token:      pgward token --key ${paths['private.pem']} --sub alice\n` +
      `Verify with it:    pgward start --signingKeys ${paths['jwks.json']} …\n`,
  );
  return 0;
}
