/** `tls-server-end-point` channel binding (RFC 5929 §4.1) for SCRAM-SHA-256-PLUS, as PostgreSQL computes it. */
import { createHash, getHashes, X509Certificate } from 'node:crypto';
import { BoundedMemo } from '../util/bounded-memo.js';
import { ScramError } from './scram.js';

const HASH_OIDS: Record<string, string> = {
  '1.2.840.113549.2.5': 'md5',
  '1.3.14.3.2.26': 'sha1',
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
  '2.16.840.1.101.3.4.2.4': 'sha224',
  '2.16.840.1.101.3.4.2.5': 'sha512-224',
  '2.16.840.1.101.3.4.2.6': 'sha512-256',
  '2.16.840.1.101.3.4.2.7': 'sha3-224',
  '2.16.840.1.101.3.4.2.8': 'sha3-256',
  '2.16.840.1.101.3.4.2.9': 'sha3-384',
  '2.16.840.1.101.3.4.2.10': 'sha3-512',
};

/** Certificate signature algorithms → the hash they use (null: no separate hash, e.g. EdDSA). */
const SIGNATURE_OIDS: Record<string, string | null> = {
  '1.2.840.113549.1.1.4': 'md5', // md5WithRSAEncryption
  '1.2.840.113549.1.1.5': 'sha1', // sha1WithRSAEncryption
  '1.3.14.3.2.29': 'sha1', // sha1WithRSA (OIW)
  '1.2.840.113549.1.1.14': 'sha224',
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.113549.1.1.15': 'sha512-224',
  '1.2.840.113549.1.1.16': 'sha512-256',
  '1.2.840.10045.4.1': 'sha1', // ecdsa-with-SHA1
  '1.2.840.10045.4.3.1': 'sha224',
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.2.840.10040.4.3': 'sha1', // dsa-with-sha1
  '2.16.840.1.101.3.4.3.1': 'sha224', // dsa-with-sha224
  '2.16.840.1.101.3.4.3.2': 'sha256', // dsa-with-sha256
  '2.16.840.1.101.3.4.3.3': 'sha384',
  '2.16.840.1.101.3.4.3.4': 'sha512',
  '2.16.840.1.101.3.4.3.5': 'sha3-224', // dsa-with-sha3-*
  '2.16.840.1.101.3.4.3.6': 'sha3-256',
  '2.16.840.1.101.3.4.3.7': 'sha3-384',
  '2.16.840.1.101.3.4.3.8': 'sha3-512',
  '2.16.840.1.101.3.4.3.9': 'sha3-224', // ecdsa-with-sha3-*
  '2.16.840.1.101.3.4.3.10': 'sha3-256',
  '2.16.840.1.101.3.4.3.11': 'sha3-384',
  '2.16.840.1.101.3.4.3.12': 'sha3-512',
  '2.16.840.1.101.3.4.3.13': 'sha3-224', // id-rsassa-pkcs1-v1_5-with-sha3-*
  '2.16.840.1.101.3.4.3.14': 'sha3-256',
  '2.16.840.1.101.3.4.3.15': 'sha3-384',
  '2.16.840.1.101.3.4.3.16': 'sha3-512',
  '1.3.101.112': null, // Ed25519
  '1.3.101.113': null, // Ed448
};
const RSASSA_PSS = '1.2.840.113549.1.1.10';

/**
 * RFC 5929 `tls-server-end-point` channel-binding data: the hash of the server certificate (DER)
 * with the hash function of the certificate's signature algorithm, MD5 and SHA-1 replaced by
 * SHA-256. `sigAlgHashName` (e.g. 'sha384') overrides the detection.
 *
 * Node's X509Certificate does not expose the signature algorithm, so the signatureAlgorithm
 * AlgorithmIdentifier is read from the DER; RSASSA-PSS uses the hash in its parameters (SHA-1, the
 * ASN.1 default, when absent → SHA-256), which is what OpenSSL's X509_get_signature_info reports
 * to PostgreSQL.
 *
 * Certificates signed with an algorithm that has no separate hash (Ed25519, Ed448) or an unknown
 * algorithm throw a ScramError. That is PostgreSQL's behaviour too: server and libpq both fail to
 * compute the binding for such certificates ("could not find digest for NID UNDEF"), RFC 5929
 * defines nothing for them. A caller can then go without channel binding (gs2 header `n`).
 */
export function tlsServerEndPoint(peerCertDer: Buffer, sigAlgHashName?: string): Buffer {
  // A backend presents the same certificate at every login: parsing it (OpenSSL 3 decodes its
  // public key too) costs a few tenths of a millisecond, a lookup by its bytes next to nothing.
  const id = `${sigAlgHashName ?? ''}:${peerCertDer.toString('base64')}`;
  const outcome = bindings.get(id, () => {
    try {
      return computeEndPoint(peerCertDer, sigAlgHashName);
    } catch (err) {
      if (!(err instanceof ScramError)) throw err;
      return err.message;
    }
  });
  if (typeof outcome === 'string') throw new ScramError(outcome);
  return Buffer.from(outcome);
}

/** Binding data (or why there is none) by certificate: one entry per backend certificate seen. */
const bindings = new BoundedMemo<string, Buffer | string>(256);

function computeEndPoint(peerCertDer: Buffer, sigAlgHashName: string | undefined): Buffer {
  let der: Buffer;
  try {
    der = new X509Certificate(peerCertDer).raw;
  } catch {
    throw new ScramError('the server certificate could not be parsed');
  }
  let hash = sigAlgHashName !== undefined ? normaliseHashName(sigAlgHashName) : signatureHash(der);
  if (hash === 'md5' || hash === 'sha1') hash = 'sha256';
  if (!getHashes().includes(hash)) throw new ScramError(`hash ${hash} is not available for channel binding`);
  return createHash(hash).update(der).digest();
}

function normaliseHashName(name: string): string {
  const n = name.toLowerCase();
  const m = /^sha-?(1|224|256|384|512)$/.exec(n);
  return m ? `sha${m[1]}` : n;
}

function signatureHash(der: Buffer): string {
  let oid: string;
  let params: Tlv | undefined;
  try {
    const cert = readTlv(der, 0, 0x30);
    const tbs = readTlv(der, cert.start, 0x30);
    const alg = readTlv(der, tbs.end, 0x30);
    const oidTlv = readTlv(der, alg.start, 0x06);
    oid = decodeOid(der.subarray(oidTlv.start, oidTlv.end));
    if (oidTlv.end < alg.end) params = readTlv(der, oidTlv.end);
  } catch {
    throw new ScramError('cannot read the signature algorithm of the server certificate');
  }
  if (oid === RSASSA_PSS) return pssHash(der, params);
  const hash = SIGNATURE_OIDS[oid];
  if (hash === null) {
    throw new ScramError(`the server certificate's signature algorithm (${oid}) has no hash, so tls-server-end-point channel binding is undefined for it`);
  }
  if (hash === undefined) throw new ScramError(`unsupported server certificate signature algorithm ${oid} for channel binding`);
  return hash;
}

/** RSASSA-PSS-params ::= SEQUENCE { hashAlgorithm [0] AlgorithmIdentifier DEFAULT sha1, … } */
function pssHash(der: Buffer, params: Tlv | undefined): string {
  if (!params || params.tag !== 0x30) return 'sha1';
  try {
    for (let off = params.start; off < params.end; ) {
      const field = readTlv(der, off);
      if (field.tag === 0xa0) {
        const alg = readTlv(der, field.start, 0x30);
        const oidTlv = readTlv(der, alg.start, 0x06);
        const oid = decodeOid(der.subarray(oidTlv.start, oidTlv.end));
        const hash = HASH_OIDS[oid];
        if (!hash) throw new ScramError(`unsupported RSASSA-PSS hash ${oid} for channel binding`);
        return hash;
      }
      off = field.end;
    }
  } catch (err) {
    if (err instanceof ScramError) throw err;
    throw new ScramError('cannot read the RSASSA-PSS parameters of the server certificate');
  }
  return 'sha1';
}

interface Tlv {
  tag: number;
  start: number;
  end: number;
}

function readTlv(buf: Buffer, off: number, expectTag?: number): Tlv {
  if (off + 2 > buf.length) throw new Error('truncated DER');
  const tag = buf[off]!;
  if (expectTag !== undefined && tag !== expectTag) throw new Error('unexpected DER tag');
  let len = buf[off + 1]!;
  let start = off + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > buf.length) throw new Error('bad DER length');
    len = 0;
    for (let k = 0; k < n; k++) len = len * 256 + buf[start + k]!;
    start += n;
  }
  const end = start + len;
  if (end > buf.length) throw new Error('truncated DER');
  return { tag, start, end };
}

function decodeOid(bytes: Buffer): string {
  if (bytes.length === 0) throw new Error('empty OID');
  const arcs: number[] = [];
  let value = 0;
  for (const b of bytes) {
    value = value * 128 + (b & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER) throw new Error('OID arc too large');
    if (!(b & 0x80)) {
      if (arcs.length === 0) arcs.push(value < 80 ? Math.floor(value / 40) : 2, value < 80 ? value % 40 : value - 80);
      else arcs.push(value);
      value = 0;
    }
  }
  if (bytes[bytes.length - 1]! & 0x80) throw new Error('truncated OID');
  return arcs.join('.');
}
