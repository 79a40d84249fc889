/**
 * Verification keys for JWT authentication, from any mix of sources:
 *
 * - PEM files (or inline PEM text) holding SPKI public keys (`PUBLIC KEY`, also PKCS#1
 *   `RSA PUBLIC KEY`) and/or X.509 certificates (`CERTIFICATE`); a file may hold several blocks.
 *   PEM keys have no key id: they are offered for every token whose `alg` fits the key type.
 * - local JWKS files (JSON with a `keys` array);
 * - remote JWKS documents (`https://`, or `http://` for loopback hosts only);
 * - an OIDC discovery document, whose `jwks_uri` is used as a remote JWKS.
 *
 * The result's `resolve` is a jose key resolver (`jwtVerify(token, keySet.resolve, …)`). When
 * more than one key fits a token (rotation with PEM keys, or JWKS keys without `kid`), it throws
 * jose's `JWKSMultipleMatchingKeys`, iterable over the candidates, as jose's own JWKS resolvers do;
 * {@link ../auth/jwt-verify.js verifyToken} tries each.
 *
 * Parsing is in pem-keys.ts (PEM) and jwks.ts (JWKS documents); remote JWKS are fetched by
 * remote-jwks.ts.
 */
import { readFile } from 'node:fs/promises';
import { errors, type CryptoKey, type JWSHeaderParameters, type JWTVerifyGetKey } from 'jose';
import { JwksHolder, checkJwks } from './jwks.js';
import { isObject } from './key-common.js';
import { pemKeys, type StaticKey } from './pem-keys.js';
import { RemoteJwks, checkUrl, fetchJson, showUrl, type FetchOptions } from './remote-jwks.js';

export interface KeySet {
  /** A jose key resolver: pass it to `jwtVerify`. */
  resolve: JWTVerifyGetKey;
  /** One line per source, for `pgward check` and the startup banner; no secrets. */
  describe(): string[];
  /** Stops background refreshes. */
  close?(): void;
  /** The `issuer` of the OIDC discovery document, when keys come from one. */
  readonly issuer?: string;
  /**
   * Changes whenever the keys change after loading (a remote JWKS refetched with other keys), so
   * that what was verified with the old keys is not trusted any longer; undefined: never changes.
   */
  readonly version?: number;
}

export interface LoadKeySetOptions {
  /** File paths (PEM or JWKS JSON), inline PEM text, or JWKS URLs. */
  signingKeys: string[];
  /** URL of an OIDC discovery document (`…/.well-known/openid-configuration`). */
  oidcDiscovery?: string;
  /** Accepted JWS algorithms; `none` and HMAC (HS*) are ignored, other unknown names are an error. */
  algorithms: string[];
  /** Deadline of one HTTP fetch, body included (default 5 s). */
  fetchTimeoutMs?: number;
  /** Largest HTTP response body accepted (default 512 KiB). */
  maxBodyBytes?: number;
  /** A token with an unknown `kid` refetches remote JWKS at most this often (default 30 s). */
  cooldownMs?: number;
  /** Remote JWKS are refetched in the background this often (default 10 min; 0 disables). */
  refreshMs?: number;
}

export const DEFAULT_FETCH_TIMEOUT_MS = 5_000;
export const DEFAULT_MAX_BODY_BYTES = 512 * 1024;
export const DEFAULT_COOLDOWN_MS = 30_000;
export const DEFAULT_REFRESH_MS = 10 * 60_000;

/** Algorithms pgward can verify with public keys. */
export const SUPPORTED_ALGORITHMS: readonly string[] = [
  'EdDSA',
  'Ed25519',
  'ES256',
  'ES384',
  'ES512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ML-DSA-44',
  'ML-DSA-65',
  'ML-DSA-87',
];

/** `none` and the HMAC family: never accepted, whatever the configuration says. */
export function isForbiddenAlgorithm(alg: string): boolean {
  return alg.toLowerCase() === 'none' || /^hs\d+$/i.test(alg);
}

/**
 * Thrown by {@link KeySet.resolve} when no key matches and a remote key source could not be
 * fetched (so the key might exist but cannot be known).
 */
export class KeySourceUnavailableError extends Error {
  readonly code = 'PGWARD_ERR_KEY_SOURCE_UNAVAILABLE' as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'KeySourceUnavailableError';
  }
}

/** Where the keys came from: PEM keys, local JWKS files, remote JWKS (from URLs or discovery). */
interface Sources {
  statics: StaticKey[];
  localSets: JwksHolder[];
  remotes: RemoteJwks[];
  discoveryLine?: string;
  issuer?: string;
}

/**
 * Loads every source. Each problem throws an Error whose message names the source (a path or a
 * URL without credentials or query) and what is wrong; nothing is partially loaded.
 */
export async function loadKeySet(opts: LoadKeySetOptions): Promise<KeySet> {
  const fetchOpts: FetchOptions = {
    timeoutMs: positiveInt(opts.fetchTimeoutMs, DEFAULT_FETCH_TIMEOUT_MS, 'fetchTimeoutMs'),
    maxBytes: positiveInt(opts.maxBodyBytes, DEFAULT_MAX_BODY_BYTES, 'maxBodyBytes'),
  };
  const cooldownMs = nonNegative(opts.cooldownMs, DEFAULT_COOLDOWN_MS, 'cooldownMs');
  const refreshMs = nonNegative(opts.refreshMs, DEFAULT_REFRESH_MS, 'refreshMs');
  const { allowed, ignored } = checkedAlgorithms(opts.algorithms);
  const entries = opts.signingKeys.map((s) => s.trim()).filter((s) => s !== '');
  if (entries.length === 0 && !opts.oidcDiscovery) {
    throw new Error('no signing keys configured: give --signingKeys and/or --oidcDiscovery');
  }
  const sources: Sources = { statics: [], localSets: [], remotes: [] };
  let inline = 0;
  for (const entry of entries) {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(entry)) {
      const url = checkUrl(entry, 'JWKS');
      const remote = new RemoteJwks(url, `JWKS ${showUrl(url)}`, fetchOpts, cooldownMs, allowed);
      await remote.initialLoad();
      sources.remotes.push(remote);
    } else if (entry.includes('-----BEGIN')) {
      inline += 1;
      sources.statics.push(...(await pemKeys(entry, `inline PEM #${inline}`, allowed)));
    } else {
      await loadKeyFile(entry, allowed, sources);
    }
  }
  if (opts.oidcDiscovery) await discover(opts.oidcDiscovery, fetchOpts, cooldownMs, allowed, sources);

  const { statics, localSets, remotes } = sources;
  let timer: NodeJS.Timeout | undefined;
  if (refreshMs > 0 && remotes.length > 0) {
    timer = setInterval(() => {
      for (const r of remotes) r.fetch().catch(() => {});
    }, Math.min(refreshMs, 0x7fffffff));
    timer.unref();
  }
  return {
    resolve: keyResolver(sources, new Set(allowed)),
    issuer: sources.issuer,
    get version() {
      let n = 0;
      for (const r of remotes) n += r.generation;
      return n;
    },
    describe() {
      const lines = [`algorithms: ${allowed.join(', ')}${ignored.length ? ` (ignored, never accepted: ${ignored.join(', ')})` : ''}`];
      for (const s of statics) lines.push(s.description);
      for (const l of localSets) lines.push(l.describe());
      if (sources.discoveryLine) lines.push(sources.discoveryLine);
      for (const r of remotes) lines.push(r.describe(refreshMs));
      return lines;
    },
    close() {
      if (timer) clearInterval(timer);
      timer = undefined;
    },
  };
}

/** The algorithms to accept, and those configured but never accepted (none, HMAC); unknown names throw. */
function checkedAlgorithms(algorithms: string[]): { allowed: string[]; ignored: string[] } {
  const ignored = algorithms.filter(isForbiddenAlgorithm);
  const unknown = algorithms.filter((a) => !isForbiddenAlgorithm(a) && !SUPPORTED_ALGORITHMS.includes(a));
  if (unknown.length > 0) {
    throw new Error(
      `algorithms: unsupported algorithm ${unknown.map((a) => JSON.stringify(a)).join(', ')} (supported: ${SUPPORTED_ALGORITHMS.join(', ')})`,
    );
  }
  const allowed = [...new Set(algorithms.filter((a) => !isForbiddenAlgorithm(a)))];
  if (allowed.length === 0) throw new Error('algorithms: no usable algorithm (none and HMAC are never accepted)');
  return { allowed, ignored };
}

/** A signing-key file: a JWKS document (by its extension or its first character) or PEM. */
async function loadKeyFile(path: string, allowed: string[], sources: Sources): Promise<void> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new Error(`signing key file ${path}: cannot read it (${errnoText(err)})`);
  }
  if (/\.(json|jwks)$/i.test(path) || text.trimStart().startsWith('{')) {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      throw new Error(`JWKS file ${path}: not valid JSON`);
    }
    const checked = await checkJwks(doc, `JWKS file ${path}`, allowed, true);
    sources.localSets.push(new JwksHolder(`JWKS file ${path}`, checked));
  } else if (text.includes('-----BEGIN')) {
    sources.statics.push(...(await pemKeys(text, `PEM file ${path}`, allowed)));
  } else {
    throw new Error(`signing key file ${path}: neither PEM (public key or certificate) nor a JWKS document`);
  }
}

/** An OIDC discovery document: its `jwks_uri` becomes a remote JWKS, its `issuer` the expected one. */
async function discover(location: string, fetchOpts: FetchOptions, cooldownMs: number, allowed: string[], sources: Sources): Promise<void> {
  const discoveryUrl = checkUrl(location, 'OIDC discovery');
  const label = `OIDC discovery ${showUrl(discoveryUrl)}`;
  let doc: unknown;
  try {
    doc = await fetchJson(discoveryUrl, fetchOpts);
  } catch (err) {
    throw new Error(`${label}: ${(err as Error).message}`);
  }
  if (!isObject(doc) || typeof doc.jwks_uri !== 'string' || doc.jwks_uri === '') {
    throw new Error(`${label}: the document has no "jwks_uri"`);
  }
  let jwksUrl: URL;
  try {
    jwksUrl = checkUrl(doc.jwks_uri, 'jwks_uri');
  } catch (err) {
    throw new Error(`${label}: ${(err as Error).message}`);
  }
  const remote = new RemoteJwks(jwksUrl, `JWKS ${showUrl(jwksUrl)} (from ${label})`, fetchOpts, cooldownMs, allowed);
  await remote.initialLoad();
  sources.remotes.push(remote);
  sources.discoveryLine = `${label}: jwks_uri ${showUrl(jwksUrl)}`;
  if (typeof doc.issuer === 'string' && doc.issuer !== '') sources.issuer = doc.issuer;
}

/**
 * jose's key resolver over every source: JWKS keys that fit the header, then PEM keys for its
 * `alg`; remote JWKS refetched (within their cooldown) when none fits.
 */
function keyResolver({ statics, localSets, remotes }: Sources, allowedSet: ReadonlySet<string>): JWTVerifyGetKey {
  const jwksSources = (): JwksHolder[] => [...localSets, ...remotes];
  return async (protectedHeader) => {
    const header = protectedHeader as JWSHeaderParameters;
    const alg = header.alg;
    if (typeof alg !== 'string' || !allowedSet.has(alg)) {
      throw new errors.JOSEAlgNotAllowed('"alg" (Algorithm) Header Parameter value not allowed');
    }
    const hasKid = header.kid !== undefined;
    const fromPem = statics.flatMap((s) => {
      const k = s.keys.get(alg);
      return k ? [k] : [];
    });
    let fromJwks = await gather(jwksSources(), header);
    let unavailable = false;
    if (fromJwks.length === 0 && remotes.length > 0 && (hasKid || fromPem.length === 0)) {
      const outcomes = await Promise.all(remotes.map((r) => r.refetchForUnknownKey()));
      unavailable = outcomes.includes('unavailable');
      if (outcomes.includes('refetched')) fromJwks = await gather(jwksSources(), header);
    }
    const all = [...fromJwks, ...fromPem];
    if (all.length === 0) {
      if (unavailable) throw new KeySourceUnavailableError('no key matches and a remote key source cannot be fetched');
      throw new errors.JWKSNoMatchingKey();
    }
    if (all.length === 1) return all[0]!;
    const multiple = new errors.JWKSMultipleMatchingKeys();
    multiple[Symbol.asyncIterator] = async function* () {
      yield* all;
    };
    throw multiple;
  };
}

async function gather(sources: JwksHolder[], header: JWSHeaderParameters): Promise<CryptoKey[]> {
  const lists = await Promise.all(sources.map((s) => s.candidates(header)));
  return lists.flat();
}

// ------------------------------------------------------------------------------------------------

function errnoText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ?? e.message;
}

function positiveInt(v: number | undefined, fallback: number, name: string): number {
  if (v === undefined) return fallback;
  if (!Number.isInteger(v) || v <= 0) throw new Error(`${name} must be a positive whole number`);
  return v;
}

function nonNegative(v: number | undefined, fallback: number, name: string): number {
  if (v === undefined) return fallback;
  if (!Number.isFinite(v) || v < 0) throw new Error(`${name} must not be negative`);
  return v;
}
