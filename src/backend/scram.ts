/**
 * SCRAM-SHA-256 and SCRAM-SHA-256-PLUS client (RFC 5802, RFC 7677) as PostgreSQL speaks it, with
 * `tls-server-end-point` channel binding (RFC 5929). Pure computation: the caller moves the
 * messages (SASLInitialResponse / SASLResponse) and supplies the server certificate.
 *
 * Error messages never contain the password, the salted password, keys, proofs or signatures.
 */
import { createHash, createHmac, getHashes, pbkdf2Sync, randomBytes, timingSafeEqual, X509Certificate } from 'node:crypto';

export type ScramMechanism = 'SCRAM-SHA-256' | 'SCRAM-SHA-256-PLUS';

export class ScramError extends Error {
  readonly code = 'PGWARD_ERR_SCRAM' as const;
  constructor(message: string) {
    super(message);
    this.name = 'ScramError';
  }
}

export interface ScramClientOptions {
  /**
   * `tls-server-end-point` data ({@link tlsServerEndPoint} of the server certificate). Given (and
   * non-empty) → the client uses SCRAM-SHA-256-PLUS with gs2 header `p=tls-server-end-point,,`.
   */
  channelBinding?: Buffer;
  /**
   * The connection uses TLS and this client could bind to it, but is not binding (the server did
   * not offer -PLUS): the gs2 header is then `y,,` ("client supports channel binding but thinks the
   * server does not"), as libpq sends, so that a server which DID offer -PLUS detects a stripped
   * mechanism list. Leave false when no binding data could be computed (e.g. an Ed25519 server
   * certificate) — the header is then `n,,`.
   */
  tls?: boolean;
  /** Client nonce (printable ASCII without ','); random 18 bytes in base64 by default. For tests. */
  nonce?: string;
  /** Username in client-first (`n=`). PostgreSQL ignores it and libpq sends ''; default ''. */
  username?: string;
  /** Upper bound for the server's iteration count (default {@link MAX_ITERATIONS}). */
  maxIterations?: number;
}

/**
 * Highest iteration count accepted from a server. PBKDF2 runs synchronously (~0.25 s per million
 * iterations on a current x86 core), so a hostile or misconfigured backend could otherwise stall
 * the event loop for minutes; PostgreSQL's default is 4096 and its `scram_iterations` values in
 * practice stay far below this. 10 000 000 is about 2–3 s of CPU.
 */
export const MAX_ITERATIONS = 10_000_000;

const GS2_PLUS = 'p=tls-server-end-point,,';
const GS2_YES = 'y,,';
const GS2_NO = 'n,,';

/** RFC 5802 `printable`: %x21-2B / %x2D-7E (visible ASCII except ','). */
const PRINTABLE = /^[\x21-\x2b\x2d-\x7e]+$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export class ScramClient {
  readonly mechanism: ScramMechanism;
  private readonly password: string;
  private readonly gs2Header: string;
  private readonly cbindData: Buffer;
  private readonly clientNonce: string;
  private readonly clientFirstBare: string;
  private readonly maxIterations: number;
  private state: 'initial' | 'first-sent' | 'final-sent' | 'done' | 'failed' = 'initial';
  private expectedServerSignature: Buffer | undefined;

  constructor(password: string, opts: ScramClientOptions = {}) {
    if (typeof password !== 'string') throw new ScramError('SCRAM needs a password string');
    this.password = password;
    const binding = opts.channelBinding;
    if (binding !== undefined && binding.length > 0) {
      this.mechanism = 'SCRAM-SHA-256-PLUS';
      this.gs2Header = GS2_PLUS;
      this.cbindData = Buffer.from(binding);
    } else {
      this.mechanism = 'SCRAM-SHA-256';
      this.gs2Header = opts.tls ? GS2_YES : GS2_NO;
      this.cbindData = Buffer.alloc(0);
    }
    const nonce = opts.nonce ?? randomBytes(18).toString('base64');
    if (!PRINTABLE.test(nonce)) throw new ScramError('the SCRAM client nonce must be printable ASCII without ","');
    this.clientNonce = nonce;
    this.clientFirstBare = `n=${saslName(opts.username ?? '')},r=${nonce}`;
    const max = opts.maxIterations ?? MAX_ITERATIONS;
    if (!Number.isSafeInteger(max) || max < 1) throw new ScramError('maxIterations must be a positive integer');
    this.maxIterations = max;
  }

  /** `gs2-header client-first-message-bare`, e.g. `n,,n=,r=…`. */
  clientFirstMessage(): string {
    if (this.state !== 'initial' && this.state !== 'first-sent') throw new ScramError('SCRAM client-first-message requested out of order');
    this.state = 'first-sent';
    return this.gs2Header + this.clientFirstBare;
  }

  /** Checks the server-first-message and returns the client-final-message. */
  handleServerFirst(serverFirst: string): string {
    if (this.state !== 'first-sent') throw this.fail('SCRAM server-first-message received out of order');
    const attrs = this.attributes(serverFirst, 'server-first-message');
    if (attrs[0]?.[0] === 'm') throw this.fail('SCRAM server-first-message has a mandatory extension this client does not support');
    const [r, s, i] = attrs;
    if (r?.[0] !== 'r' || s?.[0] !== 's' || i?.[0] !== 'i') {
      throw this.fail('malformed SCRAM server-first-message (expected r=…,s=…,i=…)');
    }
    const nonce = r[1];
    if (!nonce.startsWith(this.clientNonce) || nonce.length <= this.clientNonce.length) {
      throw this.fail('SCRAM nonce mismatch: the server nonce does not extend the client nonce');
    }
    if (!PRINTABLE.test(nonce)) throw this.fail('SCRAM server nonce contains invalid characters');
    if (s[1] === '' || !BASE64.test(s[1])) throw this.fail('SCRAM salt is not valid base64');
    const salt = Buffer.from(s[1], 'base64');
    if (!/^[1-9][0-9]{0,9}$/.test(i[1])) throw this.fail('SCRAM iteration count is not a positive integer');
    const iterations = Number(i[1]);
    if (iterations > this.maxIterations) {
      throw this.fail(`SCRAM iteration count ${iterations} exceeds the allowed maximum ${this.maxIterations}`);
    }

    const saltedPassword = pbkdf2Sync(Buffer.from(saslprep(this.password), 'utf8'), salt, iterations, 32, 'sha256');
    const clientKey = hmac(saltedPassword, 'Client Key');
    const storedKey = createHash('sha256').update(clientKey).digest();
    const serverKey = hmac(saltedPassword, 'Server Key');

    const channelBinding = Buffer.concat([Buffer.from(this.gs2Header, 'utf8'), this.cbindData]).toString('base64');
    const finalWithoutProof = `c=${channelBinding},r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${finalWithoutProof}`;
    const clientSignature = hmac(storedKey, authMessage);
    const proof = Buffer.alloc(clientKey.length);
    for (let k = 0; k < proof.length; k++) proof[k] = clientKey[k]! ^ clientSignature[k]!;
    this.expectedServerSignature = hmac(serverKey, authMessage);
    this.state = 'final-sent';
    return `${finalWithoutProof},p=${proof.toString('base64')}`;
  }

  /** Checks the server-final-message (`v=…`); throws on `e=…` or a wrong server signature. */
  verifyServerFinal(serverFinal: string): void {
    if (this.state !== 'final-sent' || !this.expectedServerSignature) {
      throw this.fail('SCRAM server-final-message received out of order');
    }
    const attrs = this.attributes(serverFinal, 'server-final-message');
    const [first] = attrs;
    if (first?.[0] === 'e') {
      const reason = /^[\x20-\x7e]{1,100}$/.test(first[1]) ? first[1] : 'unprintable error';
      throw this.fail(`the server rejected the SCRAM exchange: ${reason}`);
    }
    if (first?.[0] !== 'v') throw this.fail('malformed SCRAM server-final-message (expected v=…)');
    if (first[1] === '' || !BASE64.test(first[1])) throw this.fail('SCRAM server signature is not valid base64');
    const got = Buffer.from(first[1], 'base64');
    const want = this.expectedServerSignature;
    if (got.length !== want.length || !timingSafeEqual(got, want)) {
      throw this.fail('SCRAM server signature mismatch: the server does not know the password (or the exchange was tampered with)');
    }
    this.state = 'done';
    this.expectedServerSignature = undefined;
  }

  /** Any failure ends the exchange: later calls are refused. */
  private fail(message: string): ScramError {
    this.state = 'failed';
    this.expectedServerSignature = undefined;
    return new ScramError(message);
  }

  /** `a=value,b=value,…` → [[a, value], …]; every attribute name must be a single letter. */
  private attributes(message: string, what: string): [string, string][] {
    if (typeof message !== 'string' || message.length === 0) throw this.fail(`empty SCRAM ${what}`);
    if (message.length > 8192) throw this.fail(`SCRAM ${what} is too long`);
    return message.split(',').map((part) => {
      if (!/^[A-Za-z]=/.test(part)) throw this.fail(`malformed SCRAM ${what}`);
      return [part[0]!, part.slice(2)];
    });
  }
}

/**
 * Picks the mechanism the way libpq does: SCRAM-SHA-256-PLUS when the server offers it and we have
 * channel-binding data, else SCRAM-SHA-256. With `tls === false`, a server offering -PLUS is
 * refused (-PLUS over plaintext means TLS was stripped somewhere; libpq fails the same way).
 */
export function chooseMechanism(offered: string[], channelBinding: Buffer | undefined, tls?: boolean): ScramMechanism {
  const plus = offered.includes('SCRAM-SHA-256-PLUS');
  if (plus && tls === false) {
    throw new ScramError('the server offered SCRAM-SHA-256-PLUS over a connection without TLS');
  }
  if (plus && channelBinding !== undefined && channelBinding.length > 0) return 'SCRAM-SHA-256-PLUS';
  if (offered.includes('SCRAM-SHA-256')) return 'SCRAM-SHA-256';
  const list = offered.map((m) => (/^[\x20-\x7e]{1,40}$/.test(m) ? m : '?')).slice(0, 8).join(', ');
  throw new ScramError(
    plus
      ? 'the server requires SCRAM-SHA-256-PLUS but no channel-binding data is available'
      : `none of the server's SASL mechanisms is supported (offered: ${list || 'none'})`,
  );
}

// --- tls-server-end-point ------------------------------------------------------------------------

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

// --- SASLprep --------------------------------------------------------------------------------------

type Ranges = readonly (readonly [number, number])[];

function inRanges(cp: number, ranges: Ranges): boolean {
  for (const [lo, hi] of ranges) if (cp >= lo && cp <= hi) return true;
  return false;
}

/** RFC 3454 C.1.2 — mapped to U+0020 by RFC 4013. */
const NON_ASCII_SPACE: Ranges = [[0x00a0, 0x00a0], [0x1680, 0x1680], [0x2000, 0x200b], [0x202f, 0x202f], [0x205f, 0x205f], [0x3000, 0x3000]];
/** RFC 3454 B.1 — mapped to nothing. */
const MAPPED_TO_NOTHING: Ranges = [
  [0x00ad, 0x00ad], [0x034f, 0x034f], [0x1806, 0x1806], [0x180b, 0x180d], [0x200b, 0x200d], [0x2060, 0x2060], [0xfe00, 0xfe0f], [0xfeff, 0xfeff],
];
/** RFC 4013 prohibited output: RFC 3454 C.1.2, C.2.1, C.2.2, C.3, C.4, C.5, C.6, C.7, C.8, C.9. */
const PROHIBITED: Ranges = [
  [0x0000, 0x001f], [0x007f, 0x00a0], [0x0340, 0x0341], [0x06dd, 0x06dd], [0x070f, 0x070f], [0x1680, 0x1680], [0x180e, 0x180e],
  [0x2000, 0x200f], [0x2028, 0x202f], [0x205f, 0x2063], [0x206a, 0x206f], [0x2ff0, 0x2ffb], [0x3000, 0x3000], [0xd800, 0xf8ff],
  [0xfdd0, 0xfdef], [0xfeff, 0xfeff], [0xfff9, 0xffff], [0x1d173, 0x1d17a], [0xe0001, 0xe0001], [0xe0020, 0xe007f], [0xf0000, 0x10ffff],
];
/** Supplementary-plane code points assigned in Unicode 3.2 (the complement of RFC 3454 A.1 there). */
const ASSIGNED_32_SUPPLEMENTARY: Ranges = [
  [0x10300, 0x1031e], [0x10320, 0x10323], [0x10330, 0x1034a], [0x10400, 0x10425], [0x10428, 0x1044d], [0x1d000, 0x1d0f5],
  [0x1d100, 0x1d126], [0x1d12a, 0x1d1dd], [0x1d400, 0x1d6a3], [0x1d6a8, 0x1d7c9], [0x1d7ce, 0x1d7ff], [0x20000, 0x2a6d6],
  [0x2f800, 0x2fa1d], [0xe0001, 0xe0001], [0xe0020, 0xe007f],
];
/** RFC 3454 D.1 — bidirectional category R or AL. */
const RAND_AL: Ranges = [
  [0x05be, 0x05be], [0x05c0, 0x05c0], [0x05c3, 0x05c3], [0x05d0, 0x05ea], [0x05f0, 0x05f4], [0x061b, 0x061b], [0x061f, 0x061f],
  [0x0621, 0x063a], [0x0640, 0x064a], [0x066d, 0x066f], [0x0671, 0x06d5], [0x06dd, 0x06dd], [0x06e5, 0x06e6], [0x06fa, 0x06fe],
  [0x0700, 0x070d], [0x0710, 0x0710], [0x0712, 0x072c], [0x0780, 0x07a5], [0x07b1, 0x07b1], [0x200f, 0x200f], [0xfb1d, 0xfb1d],
  [0xfb1f, 0xfb28], [0xfb2a, 0xfb36], [0xfb38, 0xfb3c], [0xfb3e, 0xfb3e], [0xfb40, 0xfb41], [0xfb43, 0xfb44], [0xfb46, 0xfbb1],
  [0xfbd3, 0xfd3d], [0xfd50, 0xfd8f], [0xfd92, 0xfdc7], [0xfdf0, 0xfdfc], [0xfe70, 0xfe74], [0xfe76, 0xfefc],
];
const UNASSIGNED_NOW = /^\p{Cn}$/u;
/** Approximates RFC 3454 D.2 (bidi category L): letters, spacing marks, non-European digits. */
const LEFT_TO_RIGHT = /^[\p{L}\p{Mc}\p{Nd}]$/u;
const EUROPEAN_OR_ARABIC_DIGIT: Ranges = [[0x30, 0x39], [0x660, 0x669], [0x6f0, 0x6f9], [0xff10, 0xff19]];

function unassignedIn32(cp: number): boolean {
  if (cp >= 0x10000) return !inRanges(cp, ASSIGNED_32_SUPPLEMENTARY);
  return UNASSIGNED_NOW.test(String.fromCodePoint(cp));
}

function isLCat(cp: number): boolean {
  return !inRanges(cp, RAND_AL) && !inRanges(cp, EUROPEAN_OR_ARABIC_DIGIT) && LEFT_TO_RIGHT.test(String.fromCodePoint(cp));
}

/**
 * SASLprep (RFC 4013) as PostgreSQL's pg_saslprep applies it to SCRAM passwords — both the server
 * (when it stored the verifier) and libpq; on any failure the password is used unchanged.
 *
 * - Pure ASCII is returned unchanged (PostgreSQL does not even reject ASCII control characters).
 * - Map C.1.2 spaces to U+0020 and B.1 characters to nothing; an empty result fails.
 * - Prohibited output (RFC 4013 §2.3) and unassigned code points fail. Like pg_saslprep, these and
 *   the bidi checks look at the mapped string before normalisation.
 * - Bidi (RFC 3454 §6): with any R/AL character, no L character and R/AL at both ends.
 * - NFKC with the JavaScript engine's Unicode version.
 *
 * Approximations (they can only matter for passwords mixing such characters with ones that mapping
 * or NFKC changes): "unassigned in Unicode 3.2" (A.1) is exact outside the BMP, but in the BMP it
 * is "unassigned in the engine's Unicode version", so BMP characters added after 3.2 pass;
 * bidi category L (D.2) is approximated by Unicode letters, spacing marks and non-European digits.
 */
export function saslprep(password: string): string {
  if (/^[\x00-\x7f]*$/.test(password)) return password;
  const mapped: number[] = [];
  for (const ch of password) {
    const cp = ch.codePointAt(0)!;
    if (inRanges(cp, NON_ASCII_SPACE)) mapped.push(0x20);
    else if (!inRanges(cp, MAPPED_TO_NOTHING)) mapped.push(cp);
  }
  if (mapped.length === 0) return password;
  for (const cp of mapped) {
    if (inRanges(cp, PROHIBITED) || unassignedIn32(cp)) return password;
  }
  if (mapped.some((cp) => inRanges(cp, RAND_AL))) {
    if (mapped.some(isLCat)) return password;
    if (!inRanges(mapped[0]!, RAND_AL) || !inRanges(mapped[mapped.length - 1]!, RAND_AL)) return password;
  }
  return mapped.map((cp) => String.fromCodePoint(cp)).join('').normalize('NFKC');
}

// --- helpers ---------------------------------------------------------------------------------------

function hmac(key: Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

/** RFC 5802 saslname: ',' → '=2C', '=' → '=3D'. */
function saslName(name: string): string {
  return name.replace(/=/g, '=3D').replace(/,/g, '=2C');
}
