/**
 * SCRAM-SHA-256 and SCRAM-SHA-256-PLUS client (RFC 5802, RFC 7677) as PostgreSQL speaks it, with
 * `tls-server-end-point` channel binding (RFC 5929; the binding data comes from
 * channel-binding.ts) and SASLprep of the password (saslprep.ts). Pure computation: the caller
 * moves the messages (SASLInitialResponse / SASLResponse) and supplies the channel-binding data.
 *
 * Error messages never contain the password, the salted password, keys, proofs or signatures.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { ScramKeyCache, type ScramKeys } from './scram-keys.js';
import { saslprep } from './saslprep.js';

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
   * `tls-server-end-point` data (`tlsServerEndPoint` of the server certificate, in
   * channel-binding.ts). Given (and non-empty) → the client uses SCRAM-SHA-256-PLUS with gs2 header
   * `p=tls-server-end-point,,`.
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
  /**
   * Where the keys derived from the password are kept between logins (default: the process-wide
   * {@link scramKeys}); null derives them every time.
   */
  keyCache?: ScramKeyCache | null;
}

/** The keys of the logins of this process, so that a new backend login skips PBKDF2. */
export const scramKeys = new ScramKeyCache();

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
  private readonly keyCache: ScramKeyCache | null;
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
    this.keyCache = opts.keyCache === undefined ? scramKeys : opts.keyCache;
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

    const derive = () => deriveKeys(this.password, salt, iterations);
    const { clientKey, storedKey, serverKey } = this.keyCache ? this.keyCache.get(this.password, salt, iterations, derive) : derive();

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

// --- helpers ---------------------------------------------------------------------------------------

/** RFC 5802 §3: SaltedPassword by PBKDF2 (the costly part), and the keys made from it. */
function deriveKeys(password: string, salt: Buffer, iterations: number): ScramKeys {
  const saltedPassword = pbkdf2Sync(Buffer.from(saslprep(password), 'utf8'), salt, iterations, 32, 'sha256');
  const clientKey = hmac(saltedPassword, 'Client Key');
  const serverKey = hmac(saltedPassword, 'Server Key');
  return { clientKey, storedKey: createHash('sha256').update(clientKey).digest(), serverKey };
}

function hmac(key: Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

/** RFC 5802 saslname: ',' → '=2C', '=' → '=3D'. */
function saslName(name: string): string {
  return name.replace(/=/g, '=3D').replace(/,/g, '=2C');
}
