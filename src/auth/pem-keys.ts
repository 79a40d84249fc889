/**
 * PEM signing keys (SPKI or PKCS#1 public keys, X.509 certificates): parsed, checked and imported
 * for each allowed algorithm they fit.
 */
import { X509Certificate, createPublicKey, type KeyObject } from 'node:crypto';
import { importSPKI, importX509, type CryptoKey } from 'jose';
import { MIN_RSA_BITS } from './key-common.js';

export interface StaticKey {
  description: string;
  /** alg → imported key */
  keys: Map<string, CryptoKey>;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

export async function pemKeys(text: string, label: string, allowed: readonly string[]): Promise<StaticKey[]> {
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

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ', ');
}
