import { formatIPv6, parseIPv6 } from './proxy-protocol.js';

export interface AuthThrottleOptions {
  /** Consecutive failed logins from one address before attempts are slowed (default 10). */
  after?: number;
  /** First delay; each further failure doubles it (default 1 s). */
  baseDelayMs?: number;
  /** Longest delay; an attempt whose delay would exceed it is refused instead (default 60 s). */
  maxDelayMs?: number;
  /** Addresses remembered at most; the one that failed least recently is forgotten first (default 100 000). */
  maxEntries?: number;
  /** An address with no failed login for this long starts afresh (default 10 min). */
  forgetAfterMs?: number;
  /** IPv6 clients are counted per network of this prefix length (default 64: one site, one subscriber). */
  ipv6PrefixLength?: number;
  /** Clock in milliseconds (tests). */
  now?: () => number;
}

export type ThrottleDecision =
  | { action: 'allow' }
  | { action: 'delay'; ms: number }
  | { action: 'refuse'; retryAfterMs: number };

interface Entry {
  failures: number;
  /** Delayed attempts under way whose outcome is not known yet. */
  reserved: number;
  lastFailure: number;
}

const ALLOW: ThrottleDecision = Object.freeze({ action: 'allow' });

/**
 * Auth-failure throttling per client address (SPEC §5). After `after` consecutive failures an
 * attempt from that address waits `baseDelayMs`, doubling with each further failure; once the
 * delay would exceed `maxDelayMs` attempts are refused (the caller answers `53300` with a hint)
 * until the address has had no failure for `forgetAfterMs`. A successful login resets it.
 *
 * The caller asks `check()` before authenticating, waits when told to, then reports `failure()`
 * or `success()`. Delayed attempts count as pending failures until their outcome is reported, so
 * many connections opened at once from a throttled address escalate as if made one by one.
 * Memory is bounded by `maxEntries` (least recently failed dropped first) and by expiry.
 */
export class AuthThrottle {
  private readonly after: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly maxEntries: number;
  private readonly forgetAfterMs: number;
  private readonly ipv6PrefixLength: number;
  private readonly now: () => number;
  /** In order of last failure, oldest first: expiry and eviction both take from the front. */
  private readonly entries = new Map<string, Entry>();

  constructor(opts: AuthThrottleOptions = {}) {
    this.after = opts.after ?? 10;
    this.baseDelayMs = opts.baseDelayMs ?? 1000;
    this.maxDelayMs = opts.maxDelayMs ?? 60_000;
    this.maxEntries = opts.maxEntries ?? 100_000;
    this.forgetAfterMs = opts.forgetAfterMs ?? 10 * 60_000;
    this.ipv6PrefixLength = opts.ipv6PrefixLength ?? 64;
    this.now = opts.now ?? Date.now;
    const bad: string[] = [];
    const need = (name: string, v: number, min: number, integer = true) => {
      if (!(typeof v === 'number' && v >= min && (!integer || Number.isInteger(v)))) {
        bad.push(`${name} must be ${integer ? 'an integer' : 'a number'} >= ${min} (got ${v})`);
      }
    };
    need('after', this.after, 0);
    need('baseDelayMs', this.baseDelayMs, 1, false);
    need('maxDelayMs', this.maxDelayMs, this.baseDelayMs, false);
    need('maxEntries', this.maxEntries, 1);
    need('forgetAfterMs', this.forgetAfterMs, 1, false);
    need('ipv6PrefixLength', this.ipv6PrefixLength, 0);
    if (this.ipv6PrefixLength > 128) bad.push('ipv6PrefixLength must be <= 128');
    if (bad.length > 0) throw new Error(`AuthThrottle: ${bad.join('; ')}`);
  }

  /** Addresses currently remembered. */
  get size(): number {
    return this.entries.size;
  }

  /** What to do with a new login attempt from `address`. */
  check(address: string): ThrottleDecision {
    const now = this.now();
    this.expire(now);
    const entry = this.entries.get(this.keyOf(address));
    if (!entry) return ALLOW;
    const excess = entry.failures + entry.reserved - this.after;
    if (excess < 0) return ALLOW;
    const delay = this.baseDelayMs * 2 ** excess;
    if (delay > this.maxDelayMs) {
      return { action: 'refuse', retryAfterMs: Math.max(0, entry.lastFailure + this.forgetAfterMs - now) };
    }
    entry.reserved++;
    return { action: 'delay', ms: delay };
  }

  /** A login from `address` failed. */
  failure(address: string): void {
    const now = this.now();
    this.expire(now);
    const key = this.keyOf(address);
    const entry = this.entries.get(key) ?? { failures: 0, reserved: 0, lastFailure: now };
    this.entries.delete(key);
    entry.failures++;
    if (entry.reserved > 0) entry.reserved--;
    entry.lastFailure = now;
    this.entries.set(key, entry);
    while (this.entries.size > this.maxEntries) {
      this.entries.delete(this.entries.keys().next().value!);
    }
  }

  /** A login from `address` succeeded: it starts afresh. */
  success(address: string): void {
    this.entries.delete(this.keyOf(address));
  }

  private expire(now: number): void {
    for (const [key, entry] of this.entries) {
      if (entry.lastFailure + this.forgetAfterMs > now) break;
      this.entries.delete(key);
    }
  }

  /** IPv4 as is (also when IPv4-mapped), IPv6 as its network prefix, anything else verbatim. */
  private keyOf(address: string): string {
    let host = address;
    if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
    const zone = host.indexOf('%');
    if (zone >= 0) host = host.slice(0, zone);
    if (!host.includes(':')) return host;
    const bytes = parseIPv6(host);
    if (!bytes) return address;
    if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
      return `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
    }
    const bits = this.ipv6PrefixLength;
    for (let i = 0; i < 16; i++) {
      const keep = Math.max(0, Math.min(8, bits - 8 * i));
      bytes[i] = bytes[i]! & (0xff << (8 - keep)) & 0xff;
    }
    return `${formatIPv6(bytes)}/${bits}`;
  }
}
