import { BackendSpecs, FrontendSpecs, type BackendType, type FrontendType } from '../protocol/index.js';

/**
 * The message types a session's pipeline must see, by direction: one flag per type byte. A
 * carrier hands these to the pipeline and forwards every other message itself. Sessions share
 * equal wants (`sharedWants`): change a copy, never wants a chain or carrier was given.
 */
export class MessageWants {
  readonly frontend = new Uint8Array(256);
  readonly backend = new Uint8Array(256);

  /** Adds frontend types by name; `all` for every type byte (known or not). */
  addFrontend(types: readonly FrontendType[] | 'all'): this {
    if (types === 'all') this.frontend.fill(1);
    else for (const t of types) this.frontend[FrontendSpecs[t].code] = 1;
    return this;
  }

  addBackend(types: readonly BackendType[] | 'all'): this {
    if (types === 'all') this.backend.fill(1);
    else for (const t of types) this.backend[BackendSpecs[t].code] = 1;
    return this;
  }

  /** Wants of their own with the same types, to add to. */
  copy(): MessageWants {
    const out = new MessageWants();
    out.frontend.set(this.frontend);
    out.backend.set(this.backend);
    return out;
  }

  /** Nothing asked for in either direction: every message can be forwarded. */
  get none(): boolean {
    return !this.frontend.includes(1) && !this.backend.includes(1);
  }

  /** As bits for the native carrier: 32 bytes of frontend types, then 32 of backend types. */
  bits(): Uint8Array {
    const out = new Uint8Array(64);
    for (let code = 0; code < 256; code++) {
      if (this.frontend[code]) out[code >> 3]! |= 1 << (code & 7);
      if (this.backend[code]) out[32 + (code >> 3)]! |= 1 << (code & 7);
    }
    return out;
  }
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
  const key = Buffer.from(wants.bits()).toString('latin1');
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
