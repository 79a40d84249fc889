/**
 * SCRAM's client keys, kept per (password, salt, iteration count) so that a new login to a
 * backend whose password, salt and count are known does not run PBKDF2 again (4096 rounds of
 * HMAC-SHA-256 by PostgreSQL's default: about a millisecond of CPU, on the event loop).
 *
 * Entries are found by an HMAC of the password, salt and count under a key made at random per
 * process: the map's keys reveal nothing about the password, and no password is kept. What is
 * kept (ClientKey, StoredKey, ServerKey) lets one log in to the servers that store that salt, as
 * the password itself does; the proxy holds that password anyway.
 */
import { createHmac, randomBytes } from 'node:crypto';

export interface ScramKeys {
  readonly clientKey: Buffer;
  readonly storedKey: Buffer;
  readonly serverKey: Buffer;
}

/** Enough for every backend role of a large configuration; a login beyond it only costs PBKDF2. */
export const DEFAULT_SCRAM_KEY_ENTRIES = 512;

export class ScramKeyCache {
  private readonly entries = new Map<string, ScramKeys>();
  private readonly secret = randomBytes(32);
  /** Lookups answered from the cache, and lookups that had to derive. */
  hits = 0;
  misses = 0;

  constructor(readonly maxEntries = DEFAULT_SCRAM_KEY_ENTRIES) {
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 0) throw new RangeError('maxEntries must be a whole number ≥ 0');
  }

  get size(): number {
    return this.entries.size;
  }

  /** The keys for these inputs: kept ones, else `derive()`'s (kept, the least recently used one dropped). */
  get(password: string, salt: Buffer, iterations: number, derive: () => ScramKeys): ScramKeys {
    const id = this.idOf(password, salt, iterations);
    const kept = this.entries.get(id);
    if (kept) {
      this.hits++;
      // Map order is insertion order: moving the entry to the end keeps the oldest first.
      this.entries.delete(id);
      this.entries.set(id, kept);
      return kept;
    }
    this.misses++;
    const keys = derive();
    if (this.maxEntries === 0) return keys;
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(id, keys);
    return keys;
  }

  clear(): void {
    this.entries.clear();
  }

  private idOf(password: string, salt: Buffer, iterations: number): string {
    const mac = createHmac('sha256', this.secret);
    // Lengths first, so that no two different inputs make the same byte string.
    const pw = Buffer.from(password, 'utf8');
    const head = Buffer.alloc(16);
    head.writeUInt32BE(pw.length, 0);
    head.writeUInt32BE(salt.length, 4);
    head.writeDoubleBE(iterations, 8);
    return mac.update(head).update(pw).update(salt).digest('base64');
  }
}
