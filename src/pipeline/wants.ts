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
  readonly frontend = new Uint8Array(256);
  readonly backend = new Uint8Array(256);

  /** Adds frontend types by name; `all` for every type byte (known or not). `observe`: only observed (see OBSERVED). */
  addFrontend(types: readonly FrontendType[] | 'all', observe = false): this {
    add(this.frontend, types === 'all' ? 'all' : types.map((t) => FrontendSpecs[t].code), observe ? OBSERVED : FULL);
    return this;
  }

  addBackend(types: readonly BackendType[] | 'all', observe = false): this {
    add(this.backend, types === 'all' ? 'all' : types.map((t) => BackendSpecs[t].code), observe ? OBSERVED : FULL);
    return this;
  }

  /** Adds frontend types only counted (see COUNTED), where nothing more is wanted of them. */
  countFrontend(types: readonly FrontendType[]): this {
    add(this.frontend, types.map((t) => FrontendSpecs[t].code), COUNTED);
    return this;
  }

  countBackend(types: readonly BackendType[]): this {
    add(this.backend, types.map((t) => BackendSpecs[t].code), COUNTED);
    return this;
  }

  /** Wants of their own with the same types, to add to. */
  copy(): MessageWants {
    const out = new MessageWants();
    out.frontend.set(this.frontend);
    out.backend.set(this.backend);
    return out;
  }

  /** Nothing asked for in either direction, not even observed: every message can be forwarded. */
  get none(): boolean {
    return this.frontend.every((f) => f === 0) && this.backend.every((f) => f === 0);
  }

  /**
   * As bits for the native carrier: 32 bytes of frontend types, then 32 of backend types, wanted
   * in full; then the same 64 for the types only observed or counted (to C, both are observed).
   */
  bits(): Uint8Array {
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

/** Distinct wants seen so far: one per pipeline configuration (middleware and statement telemetry). */
const shared = new Map<string, MessageWants>();
const MAX_SHARED = 256;

/**
 * Wants equal to `wants`, the same object for every session that asks for the same types, so an
 * idle session does not hold 512 bytes of flags of its own. Past MAX_SHARED distinct ones (a
 * pipeline whose declarations vary per session), `wants` itself.
 */
export function sharedWants(wants: MessageWants): MessageWants {
  // The flags themselves, not bits(): observed and counted types are the same bits there.
  const key = Buffer.from(wants.frontend).toString('latin1') + Buffer.from(wants.backend).toString('latin1');
  const known = shared.get(key);
  if (known) return known;
  if (shared.size < MAX_SHARED) shared.set(key, wants);
  return wants;
}

/** One direction's wants as a lookup of type bytes, for filtering a stream. */
export function codesOf(types: readonly (FrontendType | BackendType)[], specs: typeof FrontendSpecs | typeof BackendSpecs): Uint8Array {
  const out = new Uint8Array(256);
  for (const t of types) out[(specs as Record<string, { code: number }>)[t]!.code] = 1;
  return out;
}
