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
 * Remote JWKS are fetched here rather than with jose's createRemoteJWKSet because the proxy needs
 * things it does not offer: a bound on the body size, old keys kept when a background refresh
 * fails, and a cooldown that also applies after a failed fetch (so a burst of tokens with made-up
 * `kid`s cannot turn into a burst of requests to an identity provider that is down).
 */
import { X509Certificate, createPublicKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  createLocalJWKSet,
  errors,
  importJWK,
  importSPKI,
  importX509,
  type CryptoKey,
  type JSONWebKeySet,
  type JWK,
  type JWSHeaderParameters,
  type JWTVerifyGetKey,
} from 'jose';

export interface KeySet {
  /** A jose key resolver: pass it to `jwtVerify`. */
  resolve: JWTVerifyGetKey;
  /** One line per source, for `pgward check` and the startup banner; no secrets. */
  describe(): string[];
  /** Stops background refreshes. */
  close?(): void;
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

const MIN_RSA_BITS = 2048;

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

  const ignored = opts.algorithms.filter(isForbiddenAlgorithm);
  const unknown = opts.algorithms.filter((a) => !isForbiddenAlgorithm(a) && !SUPPORTED_ALGORITHMS.includes(a));
  if (unknown.length > 0) {
    throw new Error(
      `algorithms: unsupported algorithm ${unknown.map((a) => JSON.stringify(a)).join(', ')} (supported: ${SUPPORTED_ALGORITHMS.join(', ')})`,
    );
  }
  const allowed = [...new Set(opts.algorithms.filter((a) => !isForbiddenAlgorithm(a)))];
  if (allowed.length === 0) throw new Error('algorithms: no usable algorithm (none and HMAC are never accepted)');

  const entries = opts.signingKeys.map((s) => s.trim()).filter((s) => s !== '');
  if (entries.length === 0 && !opts.oidcDiscovery) {
    throw new Error('no signing keys configured: give --signingKeys and/or --oidcDiscovery');
  }

  const statics: StaticKey[] = [];
  const localSets: JwksHolder[] = [];
  const remotes: RemoteJwks[] = [];
  let inline = 0;

  for (const entry of entries) {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(entry)) {
      const url = checkUrl(entry, 'JWKS');
      const remote = new RemoteJwks(url, `JWKS ${showUrl(url)}`, fetchOpts, cooldownMs, allowed);
      await remote.initialLoad();
      remotes.push(remote);
    } else if (entry.includes('-----BEGIN')) {
      inline += 1;
      statics.push(...(await pemKeys(entry, `inline PEM #${inline}`, allowed)));
    } else {
      let text: string;
      try {
        text = await readFile(entry, 'utf8');
      } catch (err) {
        throw new Error(`signing key file ${entry}: cannot read it (${errnoText(err)})`);
      }
      if (/\.(json|jwks)$/i.test(entry) || text.trimStart().startsWith('{')) {
        let doc: unknown;
        try {
          doc = JSON.parse(text);
        } catch {
          throw new Error(`JWKS file ${entry}: not valid JSON`);
        }
        const checked = await checkJwks(doc, `JWKS file ${entry}`, allowed, true);
        localSets.push(new JwksHolder(`JWKS file ${entry}`, checked));
      } else if (text.includes('-----BEGIN')) {
        statics.push(...(await pemKeys(text, `PEM file ${entry}`, allowed)));
      } else {
        throw new Error(`signing key file ${entry}: neither PEM (public key or certificate) nor a JWKS document`);
      }
    }
  }

  let discoveryLine: string | undefined;
  if (opts.oidcDiscovery) {
    const discoveryUrl = checkUrl(opts.oidcDiscovery, 'OIDC discovery');
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
    remotes.push(remote);
    discoveryLine = `${label}: jwks_uri ${showUrl(jwksUrl)}`;
  }

  let timer: NodeJS.Timeout | undefined;
  if (refreshMs > 0 && remotes.length > 0) {
    timer = setInterval(() => {
      for (const r of remotes) r.fetch().catch(() => {});
    }, Math.min(refreshMs, 0x7fffffff));
    timer.unref();
  }

  const allowedSet = new Set(allowed);
  const jwksSources = (): JwksHolder[] => [...localSets, ...remotes];

  const resolve: JWTVerifyGetKey = async (protectedHeader) => {
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

  return {
    resolve,
    describe() {
      const lines = [`algorithms: ${allowed.join(', ')}${ignored.length ? ` (ignored, never accepted: ${ignored.join(', ')})` : ''}`];
      for (const s of statics) lines.push(s.description);
      for (const l of localSets) lines.push(l.describe());
      if (discoveryLine) lines.push(discoveryLine);
      for (const r of remotes) lines.push(r.describe(refreshMs));
      return lines;
    },
    close() {
      if (timer) clearInterval(timer);
      timer = undefined;
    },
  };
}

// ------------------------------------------------------------------------------------------------
// PEM

interface StaticKey {
  description: string;
  /** alg → imported key */
  keys: Map<string, CryptoKey>;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

async function pemKeys(text: string, label: string, allowed: readonly string[]): Promise<StaticKey[]> {
  const blocks = [...text.matchAll(PEM_BLOCK)];
  if (blocks.length === 0) throw new Error(`${label}: no complete PEM block found`);
  const out: StaticKey[] = [];
  let n = 0;
  for (const block of blocks) {
    n += 1;
    const kind = block[1]!;
    const where = blocks.length > 1 ? `${label} (block ${n})` : label;
    // Re-wrapped at 64 columns, so PEM pasted on one line (an environment variable) works too.
    const body = block[2]!.replace(/\s+/g, '').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
    const pem = `-----BEGIN ${kind}-----\n${body}\n-----END ${kind}-----\n`;
    if (kind === 'EC PARAMETERS') continue;
    if (kind.includes('PRIVATE KEY')) {
      throw new Error(`${where}: holds a private key; give the public key (pgward keygen writes public.pem) or a certificate`);
    }
    let keyObject: KeyObject;
    let importer: (alg: string) => Promise<CryptoKey>;
    let what: string;
    let extra = '';
    try {
      if (kind === 'PUBLIC KEY') {
        keyObject = createPublicKey(pem);
        importer = (alg) => importSPKI(pem, alg);
        what = 'public key';
      } else if (kind === 'RSA PUBLIC KEY') {
        keyObject = createPublicKey({ key: pem, format: 'pem', type: 'pkcs1' });
        const spki = keyObject.export({ type: 'spki', format: 'pem' }).toString();
        importer = (alg) => importSPKI(spki, alg);
        what = 'public key';
      } else if (kind === 'CERTIFICATE') {
        const cert = new X509Certificate(pem);
        keyObject = cert.publicKey;
        importer = (alg) => importX509(pem, alg);
        what = 'certificate';
        const expired = Date.parse(cert.validTo) < Date.now() ? ' (expired)' : '';
        extra = `, subject ${oneLine(cert.subject)}, valid until ${cert.validTo}${expired}`;
      } else {
        throw new Error(`unsupported PEM block "${kind}" (expected PUBLIC KEY or CERTIFICATE)`);
      }
    } catch (err) {
      const msg = (err as Error).message;
      throw new Error(`${where}: ${msg.startsWith('unsupported PEM block') ? msg : `cannot parse the ${kind.toLowerCase()}: ${msg}`}`);
    }
    const { type, algs } = keyFit(keyObject);
    if (keyObject.asymmetricKeyType === 'rsa' || keyObject.asymmetricKeyType === 'rsa-pss') {
      const bits = keyObject.asymmetricKeyDetails?.modulusLength ?? 0;
      if (bits < MIN_RSA_BITS) throw new Error(`${where}: RSA key of ${bits} bits is too small (at least ${MIN_RSA_BITS})`);
    }
    const usable = algs.filter((a) => allowed.includes(a));
    if (usable.length === 0) {
      throw new Error(
        `${where}: a ${type} key fits none of the allowed algorithms (${allowed.join(', ')}); it would need ${algs.join(' or ') || 'an unsupported algorithm'}`,
      );
    }
    const keys = new Map<string, CryptoKey>();
    let lastError: unknown;
    for (const alg of usable) {
      try {
        keys.set(alg, await importer(alg));
      } catch (err) {
        lastError = err;
      }
    }
    if (keys.size === 0) throw new Error(`${where}: cannot import the key: ${(lastError as Error)?.message ?? 'unknown error'}`);
    out.push({ description: `${where}: ${what}, ${type} (${[...keys.keys()].join(', ')})${extra}`, keys });
  }
  if (out.length === 0) throw new Error(`${label}: no public key or certificate found`);
  return out;
}

/** The key's type for people, and the JWS algorithms it can verify. */
function keyFit(key: KeyObject): { type: string; algs: string[] } {
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'ed25519':
      return { type: 'Ed25519', algs: ['EdDSA', 'Ed25519'] };
    case 'ec': {
      const curve = details.namedCurve;
      const alg = curve === 'prime256v1' ? 'ES256' : curve === 'secp384r1' ? 'ES384' : curve === 'secp521r1' ? 'ES512' : undefined;
      return { type: `EC ${curve ?? 'unknown curve'}`, algs: alg ? [alg] : [] };
    }
    case 'rsa':
      return { type: `RSA ${details.modulusLength ?? '?'}-bit`, algs: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'] };
    case 'rsa-pss':
      return { type: `RSA-PSS ${details.modulusLength ?? '?'}-bit`, algs: ['PS256', 'PS384', 'PS512'] };
    default: {
      const type = String(key.asymmetricKeyType ?? 'unknown');
      // ML-DSA (where the runtime has it): the JWS algorithm is the key type's name.
      return /^ml-dsa-\d+$/.test(type) ? { type: type.toUpperCase(), algs: [type.toUpperCase()] } : { type, algs: [] };
    }
  }
}

// ------------------------------------------------------------------------------------------------
// JWKS

type LocalSet = ReturnType<typeof createLocalJWKSet>;

interface CheckedJwks {
  set: LocalSet;
  kids: string[];
  count: number;
  /** Keys left out, with why (remote documents only; a local file with a bad key is an error). */
  skipped: string[];
}

/**
 * Validates a JWKS document: never private or symmetric key material; keys that are not for
 * signatures or fit no allowed algorithm are left out; each remaining key must import. `strict`
 * (local files) turns a key that does not import into an error, otherwise it is left out.
 */
async function checkJwks(doc: unknown, label: string, allowed: readonly string[], strict: boolean): Promise<CheckedJwks> {
  if (!isObject(doc) || !Array.isArray(doc.keys)) throw new Error(`${label}: not a JWKS document (expected an object with a "keys" array)`);
  const usable: JWK[] = [];
  const skipped: string[] = [];
  const kids: string[] = [];
  for (const [i, raw] of doc.keys.entries()) {
    const id = isObject(raw) && typeof raw.kid === 'string' ? ` (kid ${JSON.stringify(raw.kid.slice(0, 64))})` : '';
    const name = `key #${i + 1}${id}`;
    if (!isObject(raw) || typeof raw.kty !== 'string') {
      if (strict) throw new Error(`${label}: ${name} is not a JWK object with a "kty"`);
      skipped.push(`${name}: not a JWK`);
      continue;
    }
    const jwk = raw as JWK;
    if (jwk.kty === 'oct' || 'd' in raw || 'k' in raw || 'p' in raw || 'priv' in raw) {
      throw new Error(`${label}: ${name} holds private or symmetric key material; a key set for verification must hold public keys only`);
    }
    if (jwk.use !== undefined && jwk.use !== 'sig') {
      skipped.push(`${name}: not a signing key (use ${JSON.stringify(jwk.use)})`);
      continue;
    }
    if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))) {
      skipped.push(`${name}: key_ops without "verify"`);
      continue;
    }
    const fits = jwkAlgorithms(jwk).filter((a) => allowed.includes(a));
    if (fits.length === 0) {
      skipped.push(`${name}: fits none of the allowed algorithms`);
      continue;
    }
    try {
      if (jwk.kty === 'RSA' && typeof jwk.n === 'string') {
        const bits = Buffer.from(jwk.n, 'base64url').length * 8;
        if (bits < MIN_RSA_BITS) throw new Error(`RSA key of ${bits} bits is too small (at least ${MIN_RSA_BITS})`);
      }
      const key = await importJWK(jwk, fits[0]);
      if (key instanceof Uint8Array || key.type !== 'public') throw new Error('not a public key');
    } catch (err) {
      if (strict) throw new Error(`${label}: ${name} is not a usable key: ${(err as Error).message}`);
      skipped.push(`${name}: ${(err as Error).message}`);
      continue;
    }
    usable.push(jwk);
    if (typeof jwk.kid === 'string') kids.push(jwk.kid);
  }
  if (usable.length === 0) {
    const why = skipped.length ? ` (${skipped.join('; ')})` : '';
    throw new Error(`${label}: no usable signing key for the allowed algorithms ${allowed.join(', ')}${why}`);
  }
  const jwks: JSONWebKeySet = { keys: usable };
  let set: LocalSet;
  try {
    set = createLocalJWKSet(jwks);
  } catch (err) {
    throw new Error(`${label}: invalid key set: ${(err as Error).message}`);
  }
  return { set, kids, count: usable.length, skipped };
}

/** The algorithms a JWK can verify (its own `alg` when it names one). */
function jwkAlgorithms(jwk: JWK): string[] {
  if (typeof jwk.alg === 'string') return [jwk.alg];
  switch (jwk.kty) {
    case 'OKP':
      return jwk.crv === 'Ed25519' ? ['EdDSA', 'Ed25519'] : [];
    case 'EC':
      return jwk.crv === 'P-256' ? ['ES256'] : jwk.crv === 'P-384' ? ['ES384'] : jwk.crv === 'P-521' ? ['ES512'] : [];
    case 'RSA':
      return ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
    default:
      return [];
  }
}

class JwksHolder {
  protected current: CheckedJwks | undefined;

  constructor(
    readonly label: string,
    initial?: CheckedJwks,
  ) {
    this.current = initial;
  }

  /** Keys matching the header (by alg, kid, use, key_ops), possibly none. */
  async candidates(header: JWSHeaderParameters): Promise<CryptoKey[]> {
    const set = this.current?.set;
    if (!set) return [];
    try {
      return [await set(header)];
    } catch (err) {
      if (err instanceof errors.JWKSMultipleMatchingKeys) {
        const keys: CryptoKey[] = [];
        for await (const k of err) keys.push(k);
        return keys;
      }
      if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JOSENotSupported) return [];
      throw err;
    }
  }

  describe(): string {
    const c = this.current;
    if (!c) return `${this.label}: no keys`;
    return `${this.label}: ${keysText(c)}`;
  }
}

function keysText(c: CheckedJwks): string {
  const kids = c.kids.length ? `, kid ${c.kids.slice(0, 10).join(', ')}${c.kids.length > 10 ? ', …' : ''}` : '';
  const skipped = c.skipped.length ? `, ${c.skipped.length} skipped` : '';
  return `${c.count} key${c.count === 1 ? '' : 's'}${kids}${skipped}`;
}

class RemoteJwks extends JwksHolder {
  private inflight: Promise<void> | undefined;
  private lastAttempt = Number.NEGATIVE_INFINITY;
  private fetchedAt: number | undefined;
  private lastError: string | undefined;

  constructor(
    private readonly url: URL,
    label: string,
    private readonly fetchOpts: FetchOptions,
    private readonly cooldownMs: number,
    private readonly allowed: readonly string[],
  ) {
    super(label);
  }

  /** The first fetch, at load: any failure is the source's error. */
  async initialLoad(): Promise<void> {
    try {
      await this.fetch();
    } catch (err) {
      throw new Error(`${this.label}: ${(err as Error).message}`);
    }
  }

  /** Fetches now (concurrent callers share one request); on failure the old keys stay. */
  fetch(): Promise<void> {
    this.inflight ??= (async () => {
      this.lastAttempt = Date.now();
      try {
        const doc = await fetchJson(this.url, this.fetchOpts);
        this.current = await checkJwks(doc, 'the document', this.allowed, false);
        this.fetchedAt = Date.now();
        this.lastError = undefined;
      } catch (err) {
        this.lastError = (err as Error).message;
        throw err;
      }
    })().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  /**
   * Called when no key matched: refetches unless one was attempted less than the cooldown ago.
   * 'unavailable' when the source is failing (now or at its last attempt).
   */
  async refetchForUnknownKey(): Promise<'refetched' | 'cooling' | 'unavailable'> {
    if (!this.inflight && Date.now() - this.lastAttempt < this.cooldownMs) {
      return this.lastError === undefined ? 'cooling' : 'unavailable';
    }
    try {
      await this.fetch();
      return 'refetched';
    } catch {
      return 'unavailable';
    }
  }

  override describe(refreshMs = 0): string {
    const parts = [this.current ? keysText(this.current) : 'no keys'];
    if (this.fetchedAt !== undefined) parts.push(`fetched ${new Date(this.fetchedAt).toISOString()}`);
    parts.push(refreshMs > 0 ? `refreshed every ${msText(refreshMs)}` : 'no background refresh');
    parts.push(`unknown kid refetches at most every ${msText(this.cooldownMs)}`);
    if (this.lastError !== undefined) parts.push(`last fetch failed: ${this.lastError}`);
    return `${this.label}: ${parts.join(', ')}`;
  }
}

async function gather(sources: JwksHolder[], header: JWSHeaderParameters): Promise<CryptoKey[]> {
  const lists = await Promise.all(sources.map((s) => s.candidates(header)));
  return lists.flat();
}

// ------------------------------------------------------------------------------------------------
// HTTP

interface FetchOptions {
  timeoutMs: number;
  maxBytes: number;
}

/**
 * GETs a JSON document: HTTP 200 only (redirects are not followed, so an https URL cannot be
 * bounced to plain http), the whole exchange within the deadline, the body within the size cap.
 * Errors describe the problem without the body.
 */
async function fetchJson(url: URL, { timeoutMs, maxBytes }: FetchOptions): Promise<unknown> {
  const signal = AbortSignal.timeout(timeoutMs);
  const timedOut = () => new Error(`timed out after ${timeoutMs} ms`);
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'GET',
      redirect: 'manual',
      signal,
      headers: { accept: 'application/json, application/jwk-set+json' },
    });
  } catch (err) {
    if (signal.aborted) throw timedOut();
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const text = cause?.code ?? cause?.message ?? (err as Error).message;
    throw new Error(`cannot fetch: ${text.split(url.href).join(showUrl(url))}`);
  }
  const discard = () => res.body?.cancel().catch(() => {});
  if (res.status !== 200) {
    discard();
    const redirect = res.status >= 300 && res.status < 400 ? ' (redirects are not followed)' : '';
    throw new Error(`HTTP status ${res.status}${redirect}, expected 200`);
  }
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (Number.isFinite(declared) && declared > maxBytes) {
    discard();
    throw new Error(`response of ${declared} bytes exceeds the ${maxBytes}-byte limit`);
  }
  if (!res.body) throw new Error('empty response');
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        reader.cancel().catch(() => {});
        throw new Error(`response exceeds the ${maxBytes}-byte limit`);
      }
      chunks.push(value);
    }
  } catch (err) {
    if (signal.aborted) throw timedOut();
    throw err;
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw new Error('response is not valid UTF-8');
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new Error('response is not valid JSON');
  }
}

/** https URLs, or http for loopback hosts (tests, sidecars). */
function checkUrl(text: string, what: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`${what} URL is not a valid URL`);
  }
  if (url.username !== '' || url.password !== '') throw new Error(`${what} URL ${showUrl(url)}: credentials in the URL are not supported`);
  if (url.protocol === 'https:') return url;
  if (url.protocol === 'http:') {
    if (isLoopbackHost(url.hostname)) return url;
    throw new Error(`${what} URL ${showUrl(url)}: http:// is allowed only for loopback hosts; use https://`);
  }
  throw new Error(`${what} URL ${showUrl(url)}: unsupported scheme ${url.protocol} (use https://)`);
}

function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127(?:\.\d{1,3}){3}$/.test(h);
}

/** A URL for messages: no user info, no query string values. */
export function showUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}${url.search ? '?…' : ''}`;
}

// ------------------------------------------------------------------------------------------------

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ', ');
}

function errnoText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ?? e.message;
}

function msText(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
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
