import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { calculateJwkThumbprint, importPKCS8, SignJWT, type JWK, type JWTPayload } from 'jose';
import { parseDuration } from '../util/duration.js';
import { KEY_ALGS, UsageError, canonicalAlg, parseFlags, wantsHelp, type KeyAlg } from './keygen.js';

const TOKEN_USAGE = `Usage: pgward token --key PRIVATE.pem --sub SUBJECT [--ttl 1h] [--claim k=v]… [--kid ID]
                    [--iss ISSUER] [--aud AUDIENCE]… [--nbf DURATION] [--alg PS256]

Mints a signed JWT and prints it (and only it) on stdout, so $(pgward token …) works.

Flags:
  --key FILE      PKCS#8 PEM private key (as written by pgward keygen); the algorithm follows the
                  key: Ed25519 → EdDSA, P-256 → ES256, P-384 → ES384, RSA → RS256
  --sub SUBJECT   the "sub" claim (required)
  --ttl DURATION  lifetime: exp = now + ttl (default 1h; e.g. 30s, 10m, 1h30m, 7d)
  --claim k=v     an extra claim, repeatable; the value is JSON when it parses as JSON
                  (42, true, null, ["a","b"], {"x":1}), else a string; sub/exp/iat cannot be set here
  --kid ID        the "kid" header (default: the kid of the matching key in jwks.json next to --key)
  --iss ISSUER    the "iss" claim
  --aud AUDIENCE  the "aud" claim (repeat for several audiences)
  --nbf DURATION  not valid before now + DURATION
  --alg ALG       RSA keys only: RS256 (default) or PS256 (the default follows jwks.json when it says)

Example:
  pgward keygen --out ./keys
  pgward token --key ./keys/private.pem --sub alice@example.com --ttl 15m --claim roles='["read"]'
  psql "host=127.0.0.1 port=13013 user=alice@example.com password=$(pgward token --key ./keys/private.pem --sub alice@example.com)"
`;

/** Claims only the dedicated flags may set. */
const RESERVED: Record<string, string> = { sub: '--sub', exp: '--ttl', iat: '(always now)' };
/** Claims that have a flag but may also come from --claim (not both). */
const FLAG_CLAIMS: Record<string, string> = { iss: '--iss', aud: '--aud', nbf: '--nbf' };

/** The algorithms a private key can sign with; the first is the default. */
function algsForKey(key: KeyObject): KeyAlg[] {
  const type = key.asymmetricKeyType;
  if (type === 'ed25519') return ['EdDSA'];
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return ['ES256'];
    if (curve === 'secp384r1') return ['ES384'];
    throw new UsageError(`EC keys on curve ${curve ?? 'unknown'} are not supported (use P-256 or P-384)`);
  }
  if (type === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < 2048) throw new UsageError(`RSA key of ${bits} bits is too short (at least 2048 are required)`);
    return ['RS256', 'PS256'];
  }
  if (type === 'rsa-pss') {
    throw new UsageError('RSA-PSS-restricted keys (OID id-RSASSA-PSS) are not supported; use an ordinary RSA key with --alg PS256');
  }
  throw new UsageError(`${type ?? 'unknown'} keys are not supported (use Ed25519, P-256, P-384 or RSA; see pgward keygen)`);
}

function parseClaimValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

async function loadPrivateKey(path: string): Promise<KeyObject> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : (code ?? 'error');
    throw new UsageError(`cannot read --key ${path}: ${why}`);
  }
  // Never echo the file's content in a message: it is (or should be) a secret.
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----/.test(text) || /Proc-Type:\s*4,ENCRYPTED/.test(text)) {
    throw new UsageError(`--key ${path} is an encrypted private key; decrypt it first (openssl pkcs8 -topk8 -nocrypt)`);
  }
  if (!/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(text)) {
    const hint = /-----BEGIN (PUBLIC KEY|CERTIFICATE|RSA PUBLIC KEY)-----/.test(text)
      ? ' (it holds a public key or certificate; give the private key, e.g. private.pem)'
      : '';
    throw new UsageError(`--key ${path} is not a PEM private key${hint}`);
  }
  try {
    return createPrivateKey({ key: text, format: 'pem' });
  } catch {
    throw new UsageError(`--key ${path} could not be parsed as a PEM private key`);
  }
}

interface JwksMatch {
  kid?: string;
  alg?: string;
}

/** Looks for the key's public half in `jwks.json` next to the private key file. */
async function findInJwks(keyPath: string, thumbprint: string, err: NodeJS.WritableStream): Promise<JwksMatch | undefined> {
  const path = join(dirname(keyPath), 'jwks.json');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
  let keys: unknown;
  try {
    keys = (JSON.parse(text) as { keys?: unknown }).keys;
  } catch {
    err.write(`pgward token: warning: ignoring ${path}: not valid JSON\n`);
    return undefined;
  }
  if (!Array.isArray(keys)) return undefined;
  for (const k of keys as unknown[]) {
    if (typeof k !== 'object' || k === null) continue;
    try {
      if ((await calculateJwkThumbprint(k as JWK, 'sha256')) !== thumbprint) continue;
    } catch {
      continue;
    }
    const { kid, alg } = k as { kid?: unknown; alg?: unknown };
    return { kid: typeof kid === 'string' ? kid : undefined, alg: typeof alg === 'string' ? alg : undefined };
  }
  return undefined;
}

/** `pgward token`: prints a compact JWT on stdout; returns the exit code (0 ok, 2 any problem). */
export async function runToken(
  argv: string[],
  out: NodeJS.WritableStream = process.stdout,
  err: NodeJS.WritableStream = process.stderr,
): Promise<number> {
  if (wantsHelp(argv)) {
    out.write(TOKEN_USAGE);
    return 0;
  }
  try {
    const jwt = await mint(argv, err);
    out.write(jwt + '\n');
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      err.write(`pgward token: ${e.message}\n`);
      return 2;
    }
    // Anything else (e.g. a signing failure): still one line, never key material.
    err.write(`pgward token: ${(e as Error)?.message?.split('\n')[0] ?? String(e)}\n`);
    return 2;
  }
}

async function mint(argv: string[], err: NodeJS.WritableStream): Promise<string> {
  const flags = parseFlags(argv, {
    key: { value: true },
    sub: { value: true },
    ttl: { value: true },
    claim: { value: true, repeatable: true },
    kid: { value: true },
    iss: { value: true },
    aud: { value: true, repeatable: true },
    nbf: { value: true },
    alg: { value: true },
  });
  const one = (name: string): string | undefined => flags.values.get(name)?.[0];

  const keyPath = one('key');
  const sub = one('sub');
  const missing = [keyPath === undefined && '--key', sub === undefined && '--sub'].filter(Boolean);
  if (missing.length > 0) throw new UsageError(`${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} required (see pgward token --help)`);
  if (keyPath!.trim() === '') throw new UsageError('--key needs a file name');
  if (sub!.trim() === '') throw new UsageError('--sub must not be empty');

  const ttl = durationSeconds('ttl', one('ttl') ?? '1h', true);
  const nbfText = one('nbf');
  const nbfDelay = nbfText === undefined ? undefined : durationSeconds('nbf', nbfText, false);

  const kidFlag = one('kid');
  if (kidFlag !== undefined && kidFlag === '') throw new UsageError('--kid must not be empty');
  const iss = one('iss');
  const aud = flags.values.get('aud');

  const extra = extraClaims(flags.values);

  const algText = one('alg');
  let algFlag: KeyAlg | undefined;
  if (algText !== undefined) {
    algFlag = canonicalAlg(algText);
    if (algFlag === undefined) throw new UsageError(`--alg "${algText}" is not supported (use one of ${KEY_ALGS.join(', ')})`);
  }

  const keyObject = await loadPrivateKey(keyPath!);
  const possible = algsForKey(keyObject);
  if (algFlag !== undefined && !possible.includes(algFlag)) {
    throw new UsageError(`--alg ${algFlag} does not fit this key (it signs with ${possible.join(' or ')})`);
  }

  const publicJwk = createPublicKey(keyObject).export({ format: 'jwk' }) as JWK;
  const listed = await findInJwks(keyPath!, await calculateJwkThumbprint(publicJwk, 'sha256'), err);
  const alg = signingAlg(algFlag, possible, listed?.alg, err);
  const kid = kidFlag ?? listed?.kid;

  const pkcs8 = keyObject.export({ type: 'pkcs8', format: 'pem' }) as string;
  const signingKey = await importPKCS8(pkcs8, alg);

  const now = Math.floor(Date.now() / 1000);
  // Object.fromEntries defines own properties, so even a claim named "__proto__" stays a claim.
  const payload: JWTPayload = Object.fromEntries(extra);
  const jwt = new SignJWT(payload)
    .setProtectedHeader(kid === undefined ? { alg, typ: 'JWT' } : { alg, typ: 'JWT', kid })
    .setSubject(sub!)
    .setIssuedAt(now)
    .setExpirationTime(now + ttl);
  if (iss !== undefined) jwt.setIssuer(iss);
  if (aud !== undefined) jwt.setAudience(aud.length === 1 ? aud[0]! : aud);
  if (nbfDelay !== undefined) jwt.setNotBefore(now + nbfDelay);
  return jwt.sign(signingKey);
}

/** A duration flag in whole seconds (rounded up). */
function durationSeconds(name: string, text: string, positive: boolean): number {
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch (e) {
    throw new UsageError(`--${name}: ${(e as Error).message}`);
  }
  if (positive && ms <= 0) throw new UsageError(`--${name} must be greater than zero`);
  return Math.ceil(ms / 1000);
}

/** The `--claim name=value` flags, refusing registered claims that have flags of their own. */
function extraClaims(values: ReadonlyMap<string, string[]>): Map<string, unknown> {
  const extra = new Map<string, unknown>();
  for (const c of values.get('claim') ?? []) {
    const eq = c.indexOf('=');
    if (eq <= 0) throw new UsageError(`--claim "${c}" must look like name=value`);
    const name = c.slice(0, eq);
    if (Object.hasOwn(RESERVED, name)) throw new UsageError(`--claim cannot set "${name}" (use ${RESERVED[name]})`);
    if (extra.has(name)) throw new UsageError(`--claim "${name}" given more than once`);
    const flag = Object.hasOwn(FLAG_CLAIMS, name) ? FLAG_CLAIMS[name]! : undefined;
    if (flag !== undefined && values.has(flag.slice(2))) throw new UsageError(`"${name}" given both by ${flag} and --claim`);
    extra.set(name, parseClaimValue(c.slice(eq + 1)));
  }
  const nbfClaim = extra.get('nbf');
  if (nbfClaim !== undefined && typeof nbfClaim !== 'number') throw new UsageError('--claim nbf must be a number (seconds since the epoch); or use --nbf DURATION');
  return extra;
}

/**
 * The algorithm to sign with: --alg, else the one jwks.json declares for this key (e.g. an RSA
 * key that keygen made for PS256), else the key's first; a --alg that the JWKS contradicts warns.
 */
function signingAlg(algFlag: KeyAlg | undefined, possible: KeyAlg[], listedAlg: string | undefined, err: NodeJS.WritableStream): KeyAlg {
  if (algFlag === undefined) {
    const a = listedAlg === undefined ? undefined : canonicalAlg(listedAlg);
    return a !== undefined && possible.includes(a) ? a : possible[0]!;
  }
  if (listedAlg !== undefined && canonicalAlg(listedAlg) !== algFlag) {
    err.write(`pgward token: warning: jwks.json declares alg ${listedAlg} for this key; a ${algFlag} token will not verify against it\n`);
  }
  return algFlag;
}
