/**
 * JWKS documents: validated down to public signing keys, and held so that the keys fitting a
 * token's header can be found.
 */
import {
  createLocalJWKSet,
  errors,
  importJWK,
  type CryptoKey,
  type JSONWebKeySet,
  type JWK,
  type JWSHeaderParameters,
} from 'jose';
import { MIN_RSA_BITS, isObject } from './key-common.js';

type LocalSet = ReturnType<typeof createLocalJWKSet>;

export interface CheckedJwks {
  set: LocalSet;
  kids: string[];
  count: number;
  /** Keys left out, with why (remote documents only; a local file with a bad key is an error). */
  skipped: string[];
  /** The usable keys as text: equal fingerprints, equal keys. */
  fingerprint: string;
}

/**
 * Validates a JWKS document: never private or symmetric key material; keys that are not for
 * signatures or fit no allowed algorithm are left out; each remaining key must import. `strict`
 * (local files) turns a key that does not import into an error, otherwise it is left out.
 */
export async function checkJwks(doc: unknown, label: string, allowed: readonly string[], strict: boolean): Promise<CheckedJwks> {
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
  return { set, kids, count: usable.length, skipped, fingerprint: JSON.stringify(usable) };
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

export class JwksHolder {
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

export function keysText(c: CheckedJwks): string {
  const kids = c.kids.length ? `, kid ${c.kids.slice(0, 10).join(', ')}${c.kids.length > 10 ? ', …' : ''}` : '';
  const skipped = c.skipped.length ? `, ${c.skipped.length} skipped` : '';
  return `${c.count} key${c.count === 1 ? '' : 's'}${kids}${skipped}`;
}
