/**
 * Verifies a client's JSON Web Token (the password of the `jwt` auth provider) with jose.
 *
 * Every refusal is a {@link TokenError}: `FATAL 28P01` whose message is one fixed reason
 * ("token expired", "signature invalid"…) and whose detail, when there is one, is a fixed sentence.
 * Neither ever contains the token, any part of it, or a claim value taken from it.
 */
import { decodeProtectedHeader, jwtVerify, type CryptoKey, type JWTPayload, type JWTVerifyOptions, type JWTVerifyResult } from 'jose';
import { PgError, SqlState } from '../protocol/errors.js';
import { isForbiddenAlgorithm, type KeySet } from './key-sources.js';

export const TOKEN_FAILURE_REASONS = [
  'malformed token',
  'token too large',
  'token expired',
  'token not yet valid',
  'signature invalid',
  'unknown key id',
  'algorithm not allowed',
  'audience mismatch',
  'issuer mismatch',
  'missing exp claim',
  'key source unavailable',
] as const;

export type TokenFailureReason = (typeof TOKEN_FAILURE_REASONS)[number];

/** A refused token: FATAL 28P01, message = reason. */
export class TokenError extends PgError {
  readonly reason: TokenFailureReason;

  /**
   * @param detail a fixed, person-readable sentence; never anything taken from the token.
   * @param cause kept for the operator's log only (never a jose claim error, which holds claims).
   */
  constructor(reason: TokenFailureReason, detail?: string, cause?: unknown) {
    super('FATAL', SqlState.InvalidPassword, reason, { detail, cause });
    this.name = 'TokenError';
    this.reason = reason;
  }
}

export interface VerifyTokenOptions {
  algorithms: string[];
  issuer?: string;
  audience?: string;
  clockToleranceSec: number;
  requireExp: boolean;
  /** Largest token accepted, in bytes (default 16 KiB). */
  maxLength?: number;
}

/** Alias of {@link VerifyTokenOptions}. */
export type VerifyOptions = VerifyTokenOptions;

export interface VerifiedToken {
  claims: JWTPayload;
  /** `exp` in milliseconds since the epoch, when the token has one. */
  expiresAt?: number;
}

export const DEFAULT_MAX_TOKEN_LENGTH = 16 * 1024;

/** Three base64url segments; the signature may be empty so `alg: none` tokens get their own reason. */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/;

export async function verifyToken(token: string, keys: KeySet, opts: VerifyTokenOptions): Promise<VerifiedToken> {
  if (typeof token !== 'string' || token === '') throw new TokenError('malformed token', 'the password is not a JSON Web Token');
  const max = opts.maxLength ?? DEFAULT_MAX_TOKEN_LENGTH;
  const size = Buffer.byteLength(token, 'utf8');
  if (size > max) throw new TokenError('token too large', `tokens of at most ${max} bytes are accepted`);

  if (!COMPACT_JWS.test(token)) {
    const parts = token.split('.').length;
    throw new TokenError(
      'malformed token',
      parts === 5 ? 'encrypted tokens (JWE) are not supported; send a signed JWT' : 'the password is not a signed JSON Web Token (header.payload.signature)',
    );
  }
  let alg: unknown;
  try {
    alg = decodeProtectedHeader(token).alg;
  } catch {
    throw new TokenError('malformed token', 'the token header is not valid base64url-encoded JSON');
  }
  if (typeof alg !== 'string' || alg === '') throw new TokenError('malformed token', 'the token header names no algorithm');
  if (isForbiddenAlgorithm(alg)) {
    throw new TokenError('algorithm not allowed', 'unsigned tokens and HMAC (shared-secret) algorithms are never accepted');
  }
  const allowed = opts.algorithms.filter((a) => !isForbiddenAlgorithm(a));
  if (!allowed.includes(alg)) {
    throw new TokenError('algorithm not allowed', `the token's algorithm is not one of ${allowed.join(', ') || '(none configured)'}`);
  }
  if (token.endsWith('.')) throw new TokenError('signature invalid', 'the token carries no signature');

  const verifyOptions: JWTVerifyOptions = {
    algorithms: allowed,
    clockTolerance: opts.clockToleranceSec,
    requiredClaims: opts.requireExp ? ['exp'] : [],
  };
  if (opts.issuer !== undefined) verifyOptions.issuer = opts.issuer;
  if (opts.audience !== undefined) verifyOptions.audience = opts.audience;

  let result: JWTVerifyResult;
  try {
    result = await jwtVerify(token, keys.resolve, verifyOptions);
  } catch (err) {
    if (codeOf(err) !== 'ERR_JWKS_MULTIPLE_MATCHING_KEYS') throw mapJoseError(err);
    result = await verifyWithEach(token, err as AsyncIterable<CryptoKey>, verifyOptions);
  }

  const claims = result.payload;
  const now = Date.now() / 1000;
  if (typeof claims.iat === 'number' && claims.iat > now + opts.clockToleranceSec) {
    throw new TokenError('token not yet valid', 'the token is issued in the future (check the clocks)');
  }
  const verified: VerifiedToken = { claims };
  if (typeof claims.exp === 'number') verified.expiresAt = claims.exp * 1000;
  return verified;
}

/** Several keys fit (rotation): the first whose signature verifies decides; claims are then checked. */
async function verifyWithEach(token: string, candidates: AsyncIterable<CryptoKey>, options: JWTVerifyOptions): Promise<JWTVerifyResult> {
  for await (const key of candidates) {
    try {
      return await jwtVerify(token, key, options);
    } catch (err) {
      if (codeOf(err) === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' || err instanceof TypeError) continue;
      throw mapJoseError(err);
    }
  }
  throw new TokenError('signature invalid', 'the signature does not verify with any configured key');
}

function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** jose's error codes → reasons. Claim errors carry the claims set: never kept as the cause. */
function mapJoseError(err: unknown): TokenError {
  if (err instanceof TokenError) return err;
  const code = codeOf(err);
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      return new TokenError('token expired', 'the token has expired');
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED': {
      const { claim, reason } = err as { claim?: string; reason?: string };
      const checkFailed = reason === 'check_failed';
      switch (claim) {
        case 'nbf':
          return checkFailed
            ? new TokenError('token not yet valid', 'the token is not valid yet (nbf)')
            : new TokenError('malformed token', 'the "nbf" claim is not a number');
        case 'iat':
          return checkFailed
            ? new TokenError('token not yet valid', 'the token is issued in the future (check the clocks)')
            : new TokenError('malformed token', 'the "iat" claim is not a number');
        case 'aud':
          return new TokenError('audience mismatch', 'the token is not meant for this service (aud)');
        case 'iss':
          return reason === 'missing'
            ? new TokenError('issuer mismatch', 'the token names no issuer (iss); this service requires one')
            : new TokenError('issuer mismatch', 'the token comes from an issuer this service does not accept (iss)');
        case 'exp':
          return reason === 'missing'
            ? new TokenError('missing exp claim', 'tokens must carry an expiry time (exp)')
            : new TokenError('malformed token', 'the "exp" claim is not a number');
        default:
          return new TokenError('malformed token', 'a claim of the token is invalid');
      }
    }
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return new TokenError('signature invalid', 'the signature does not verify');
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return new TokenError('unknown key id', "no configured key matches the token's key id and algorithm");
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return new TokenError('algorithm not allowed', "the token's algorithm is not accepted");
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
    case 'ERR_JOSE_NOT_SUPPORTED':
      return new TokenError('malformed token', 'the token is not a valid signed JWT');
    case 'ERR_JWKS_TIMEOUT':
    case 'ERR_JWKS_INVALID':
    case 'ERR_JWK_INVALID':
    case 'PGWARD_ERR_KEY_SOURCE_UNAVAILABLE':
      return new TokenError('key source unavailable', 'the verification keys cannot be fetched right now', err);
    default:
      // jose throws TypeError for malformed numeric claims (e.g. a non-finite "exp").
      return new TokenError('malformed token', 'the token cannot be verified', err);
  }
}
