import { BackendSpecs, FrontendSpecs, type BackendType, type FrontendType } from '../protocol/index.js';

/** A type the pipeline must see before it goes on (held, and what the chain writes is written). */
export const FULL = 1;
/** A type the pipeline only observes: forwarded at once, shown to the chain afterwards, its output dropped. */
export const OBSERVED = 2;
/**
 * A type the pipeline only counts (`MessageInterest.count`): forwarded at once, and only its
 * count goes to the chain (`MiddlewareContext.messageCount`), no message. The native carrier
 * frames it as an observed type.
 */
export const COUNTED = 3;
/** Which flag wins where two middleware ask differently: seeing in full, then observing, then counting. */
const RANK = [0, 3, 2, 1];

/**
 * The message types a session's pipeline must see, by direction: one flag per type byte, FULL or
 * OBSERVED (a type wanted in full by anyone is FULL for all). A carrier hands these to the
 * pipeline and forwards every other message itself. Sessions share equal wants (`sharedWants`):
 * change a copy, never wants a chain or carrier was given.
 */
export class MessageWants {
  /**
   * Both directions' flags in one 512-byte store: a typed array this size lives outside V8's heap
   * (a malloc and an ArrayBuffer record each), and a session builds two or three MessageWants.
   */
  private readonly flags = new Uint8Array(512);
  readonly frontend = new Uint8Array(this.flags.buffer, 0, 256);
  readonly backend = new Uint8Array(this.flags.buffer, 256, 256);
  /** `bits()` as last computed; dropped by every add (the flags change only through them). */
  private bitsMade: Uint8Array | undefined = undefined;

  /** Adds frontend types by name; `all` for every type byte (known or not). `observe`: only observed (see OBSERVED). */
  addFrontend(types: readonly FrontendType[] | 'all', observe = false): this {
    add(this.frontend, types === 'all' ? 'all' : types.map((t) => FrontendSpecs[t].code), observe ? OBSERVED : FULL);
    this.bitsMade = undefined;
    return this;
  }

  addBackend(types: readonly BackendType[] | 'all', observe = false): this {
    add(this.backend, types === 'all' ? 'all' : types.map((t) => BackendSpecs[t].code), observe ? OBSERVED : FULL);
    this.bitsMade = undefined;
    return this;
  }

  /** Adds frontend types only counted (see COUNTED), where nothing more is wanted of them. */
  countFrontend(types: readonly FrontendType[]): this {
    add(this.frontend, types.map((t) => FrontendSpecs[t].code), COUNTED);
    this.bitsMade = undefined;
    return this;
  }

  countBackend(types: readonly BackendType[]): this {
    add(this.backend, types.map((t) => BackendSpecs[t].code), COUNTED);
    this.bitsMade = undefined;
    return this;
  }

  /** Wants of their own with the same types, to add to. */
  copy(): MessageWants {
    const out = new MessageWants();
    out.flags.set(this.flags);
    return out;
  }

  /** Nothing asked for in either direction, not even observed: every message can be forwarded. */
  get none(): boolean {
    return this.frontend.every((f) => f === 0) && this.backend.every((f) => f === 0);
  }

  /**
   * As bits for the native carrier: 32 bytes of frontend types, then 32 of backend types, wanted
   * in full; then the same 64 for the types only observed or counted (to C, both are observed).
   * Made once per set of wants (a carrier per session asks for the shared wants' bits): the same
   * array each time, not to be changed.
   */
  bits(): Uint8Array {
    return (this.bitsMade ??= this.makeBits());
  }

  /** A hash of the flags (equal wants hash alike), made without allocating: see `sharedWants`. */
  hash(): number {
    const flags = this.flags;
    let h = 0x811c9dc5;
    for (let i = 0; i < 512; i++) {
      const f = flags[i]!;
      if (f !== 0) h = Math.imul(h ^ ((i << 2) | f), 0x01000193);
    }
    return h >>> 0;
  }

  /** The same types wanted the same way. */
  equals(other: MessageWants): boolean {
    const a = this.flags;
    const b = other.flags;
    for (let i = 0; i < 512; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  private makeBits(): Uint8Array {
    const out = new Uint8Array(128);
    for (let code = 0; code < 256; code++) {
      const bit = 1 << (code & 7);
      const f = this.frontend[code]!;
      const b = this.backend[code]!;
      if (f) out[(f === FULL ? 0 : 64) + (code >> 3)]! |= bit;
      if (b) out[(b === FULL ? 0 : 64) + 32 + (code >> 3)]! |= bit;
    }
    return out;
  }
}

/** Sets `flag` on `codes` (or every byte) where no flag that wins over it is set (see RANK). */
function add(flags: Uint8Array, codes: readonly number[] | 'all', flag: number): void {
  const all = codes === 'all' ? Array.from(flags.keys()) : codes;
  for (const c of all) if (RANK[flag]! > RANK[flags[c]!]!) flags[c] = flag;
}

/** Distinct wants seen so far, by hash: one per pipeline configuration (middleware and statement telemetry). */
const shared = new Map<number, MessageWants[]>();
let sharedCount = 0;
const MAX_SHARED = 256;

/**
 * Wants equal to `wants`, the same object for every session that asks for the same types, so an
 * idle session does not hold 512 bytes of flags of its own. Past MAX_SHARED distinct ones (a
 * pipeline whose declarations vary per session), `wants` itself.
 */
export function sharedWants(wants: MessageWants): MessageWants {
  // Found by hash of the flags and compared, not keyed by a string of them (two per session, 500
  // bytes each); the flags, not bits(): observed and counted types are the same bits there.
  const hash = wants.hash();
  const known = shared.get(hash);
  if (known) for (const k of known) if (k.equals(wants)) return k;
  if (sharedCount < MAX_SHARED) {
    sharedCount++;
    if (known) known.push(wants);
    else shared.set(hash, [wants]);
  }

  return wants;
}

/** One direction's wants as a lookup of type bytes, for filtering a stream. */
export function codesOf(types: readonly (FrontendType | BackendType)[], specs: typeof FrontendSpecs | typeof BackendSpecs): Uint8Array {
  const out = new Uint8Array(256);
  for (const t of types) out[(specs as Record<string, { code: number }>)[t]!.code] = 1;
  return out;
}
