/**
 * Verified tokens, kept until they expire, so that a client that logs in again with the same token
 * (a CI job, a serverless function, a framework opening a connection per request) skips the
 * signature check. Only the verification is skipped: revocation, routing and the user check run
 * at every login, on the kept claims.
 *
 * An entry is found by the SHA-256 of the token (the token itself is not kept) and is valid only
 * - before the token's `exp` (never beyond: after it the token is verified again, and jose
 *   decides, with its clock tolerance, whether it is expired);
 * - with the very key set that verified it, as it was then: a reload builds a new key set, and a
 *   remote JWKS that changes its keys changes the set's version, so a removed key stops
 *   verifying at once. Tokens without `exp` are not kept.
 */
import crypto, { createHash } from 'node:crypto';
import type { VerifiedToken } from './jwt-verify.js';
import type { KeySet } from './key-sources.js';

/** Enough for the busy tokens of a large deployment; the rest are verified as before. */
export const DEFAULT_TOKEN_CACHE_ENTRIES = 1000;

interface Entry {
  verified: VerifiedToken;
  keys: KeySet;
  keysVersion: number | undefined;
  /** `exp` in ms: the entry is used strictly before it. */
  until: number;
}

export class VerifiedTokenCache {
  private readonly entries = new Map<string, Entry>();
  /** Logins answered from the cache, and verifications done (stats for tests and tuning). */
  hits = 0;
  misses = 0;

  constructor(
    readonly maxEntries = DEFAULT_TOKEN_CACHE_ENTRIES,
    private readonly now: () => number = Date.now,
  ) {
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 0) throw new RangeError('maxEntries must be a whole number ≥ 0');
  }

  get size(): number {
    return this.entries.size;
  }

  /** The kept result for this token, if it was verified by `keys` as they are now and has not expired. */
  get(token: string, keys: KeySet): VerifiedToken | undefined {
    const id = idOf(token);
    const entry = this.entries.get(id);
    if (!entry) {
      this.misses++;
      return undefined;
    }
    if (entry.keys !== keys || entry.keysVersion !== keys.version || this.now() >= entry.until) {
      this.entries.delete(id);
      this.misses++;
      return undefined;
    }
    this.hits++;
    // Map order is insertion order: moving the entry to the end keeps the least recently used first.
    this.entries.delete(id);
    this.entries.set(id, entry);
    return entry.verified;
  }

  /** Keeps a result `keys` just verified (when it has an `exp` still ahead); returns it. */
  keep(token: string, keys: KeySet, verified: VerifiedToken): VerifiedToken {
    const until = verified.expiresAt;
    if (this.maxEntries === 0 || until === undefined || !(until > this.now())) return verified;
    Object.freeze(verified.claims);
    const id = idOf(token);
    this.entries.delete(id);
    while (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(id, { verified: Object.freeze(verified), keys, keysVersion: keys.version, until });
    return verified;
  }

  clear(): void {
    this.entries.clear();
  }
}

// One call at every login: the one-shot `crypto.hash` (Node ≥ 20.12) makes no Hash object and
// took half the time of createHash/update/digest for a 170-byte token. The same digest either way.
const oneShot = (crypto as { hash?: (alg: string, data: string, enc: 'base64') => string }).hash;

function idOf(token: string): string {
  return oneShot ? oneShot('sha256', token, 'base64') : createHash('sha256').update(token, 'utf8').digest('base64');
}
