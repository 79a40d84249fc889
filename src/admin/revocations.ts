import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';

/** One revocation: a subject or a token id, until a moment (ms) or for good. */
export interface Revocation {
  kind: 'sub' | 'jti';
  value: string;
  until?: number;
  reason?: string;
}

/** Parses a revocation file's text (YAML or JSON list of `{ sub | jti, until?, reason? }`); throws on any bad entry. */
export function parseRevocations(text: string): Revocation[] {
  const doc: unknown = text.trim() === '' ? [] : parseYaml(text);
  if (!Array.isArray(doc)) throw new Error('expected a list of { sub | jti, until?, reason? }');
  return doc.map((e: unknown, i) => {
    if (typeof e !== 'object' || e === null) throw new Error(`entry ${i + 1}: expected an object`);
    const o = e as Record<string, unknown>;
    const unknownKeys = Object.keys(o).filter((k) => !['sub', 'jti', 'until', 'reason'].includes(k));
    if (unknownKeys.length > 0) throw new Error(`entry ${i + 1}: unknown key "${unknownKeys[0]}"`);
    const has = ['sub', 'jti'].filter((k) => o[k] !== undefined);
    if (has.length !== 1) throw new Error(`entry ${i + 1}: needs exactly one of sub or jti`);
    const kind = has[0] as 'sub' | 'jti';
    const value = o[kind];
    if (typeof value !== 'string' || value === '') throw new Error(`entry ${i + 1}: ${kind} must be a non-empty string`);
    let until: number | undefined;
    if (o.until !== undefined) {
      until = parseUntil(o.until instanceof Date ? o.until.toISOString() : String(o.until));
      if (until === undefined) throw new Error(`entry ${i + 1}: until is not a timestamp`);
    }
    if (o.reason !== undefined && typeof o.reason !== 'string') throw new Error(`entry ${i + 1}: reason must be a string`);
    return { kind, value, until, reason: o.reason as string | undefined };
  });
}

/** An ISO-8601 / PostgreSQL-style timestamp as ms, or undefined. */
export function parseUntil(text: string): number | undefined {
  const ms = Date.parse(text.trim().replace(' ', 'T').replace(/([+-]\d\d)$/, '$1:00'));
  return Number.isFinite(ms) ? ms : undefined;
}

/**
 * The revocation list: looked up per login (two map lookups, whatever its size), read from and
 * written back to `path` when one is set. A file that fails to parse leaves the list as it was.
 */
export class RevocationStore {
  private readonly entries = new Map<string, Revocation>();

  constructor(readonly path?: string, private readonly now: () => number = Date.now) {}

  /** Re-reads the file; throws (keeping the current list) when it cannot be read or parsed. */
  load(): void {
    if (!this.path) return;
    const list = parseRevocations(readFileSync(this.path, 'utf8'));
    this.entries.clear();
    for (const r of list) this.entries.set(key(r.kind, r.value), r);
    this.prune();
  }

  /** The entry revoking this subject or token id, if one is in force. */
  match(sub: string | undefined, jti: string | undefined): Revocation | undefined {
    for (const k of [sub !== undefined ? key('sub', sub) : '', jti !== undefined ? key('jti', jti) : '']) {
      const r = k ? this.entries.get(k) : undefined;
      if (r && (r.until === undefined || r.until > this.now())) return r;
    }
    return undefined;
  }

  add(r: Revocation): void {
    this.entries.set(key(r.kind, r.value), r);
    this.save();
  }

  /** Removes an entry; false when there was none. */
  remove(kind: 'sub' | 'jti', value: string): boolean {
    const had = this.entries.delete(key(kind, value));
    if (had) this.save();
    return had;
  }

  /** Entries in force (those past `until` are dropped). */
  list(): Revocation[] {
    this.prune();
    return [...this.entries.values()];
  }

  get size(): number {
    this.prune();
    return this.entries.size;
  }

  private prune(): void {
    const now = this.now();
    for (const [k, r] of this.entries) if (r.until !== undefined && r.until <= now) this.entries.delete(k);
  }

  /** Writes the list atomically: a temp file beside it, then rename. */
  private save(): void {
    if (!this.path) return;
    const doc = this.list().map((r) => ({
      [r.kind]: r.value,
      ...(r.until !== undefined ? { until: new Date(r.until).toISOString() } : {}),
      ...(r.reason !== undefined ? { reason: r.reason } : {}),
    }));
    const tmp = `${this.path}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(doc, null, 2) + '\n', { mode: 0o600 });
    renameSync(tmp, this.path);
  }
}

function key(kind: 'sub' | 'jti', value: string): string {
  return `${kind}\0${value}`;
}
