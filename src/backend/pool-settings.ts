import { formatDuration, parseDuration } from '../util/duration.js';

/** `session`: backend connections are reused between sessions; `off`: one new connection per session. */
export type PoolMode = 'session' | 'off';

/** How backend connections of one target are kept and reused (SPEC §8). */
export interface PoolSettings {
  readonly mode: PoolMode;
  /** Most connections per target, in use and idle together. */
  readonly maxSize: number;
  /** How long a session waits for a connection of a full target before 53300. */
  readonly waitTimeoutMs: number;
  /** Most idle connections kept per target. */
  readonly maxIdle: number;
  /** An idle connection unused this long is closed. */
  readonly idleTimeoutMs: number;
  /** A connection older than this is closed instead of being reused. */
  readonly maxLifetimeMs: number;
  /** The statement run before a connection serves another session. */
  readonly reset: string;
  /** Idle connections opened at start (and after a reload) for each target that is not a template. */
  readonly warm: number;
}

export type PoolOverride = Partial<PoolSettings>;

export const DEFAULT_POOL_SETTINGS: PoolSettings = Object.freeze({
  mode: 'session',
  maxSize: 100,
  waitTimeoutMs: 5_000,
  maxIdle: 16,
  idleTimeoutMs: 10 * 60_000,
  maxLifetimeMs: 60 * 60_000,
  reset: 'DISCARD ALL',
  warm: 0,
});

/** The keys of `pool:` with what each takes (flags are `--pool` + the key, capitalised). */
export const POOL_KEYS = {
  mode: 'session|off',
  maxSize: 'integer ≥ 1',
  waitTimeout: 'duration',
  maxIdle: 'integer ≥ 0',
  idleTimeout: 'duration',
  maxLifetime: 'duration',
  reset: 'SQL',
  warm: 'integer ≥ 0',
} as const;

export type PoolKey = keyof typeof POOL_KEYS;

/**
 * Validates a `pool:` mapping (the config file's, or one backends-file entry's) into the settings
 * it gives; every problem is reported as `<where>.<key>: …`.
 */
export function parsePoolOverride(value: unknown, where: string, problems: string[]): PoolOverride {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    problems.push(`${where}: expected a mapping of ${Object.keys(POOL_KEYS).join(', ')}`);
    return {};
  }
  const out: { -readonly [K in keyof PoolSettings]?: PoolSettings[K] } = {};
  for (const [key, raw] of Object.entries(value as Record<string, unknown>)) {
    const fail = (what: string) => problems.push(`${where}.${key}: ${what}`);
    switch (key) {
      case 'mode':
        if (raw === 'session' || raw === 'off') out.mode = raw;
        else fail(`expected session or off, got ${JSON.stringify(raw)}`);
        break;
      case 'maxSize':
      case 'maxIdle':
      case 'warm': {
        const min = key === 'maxSize' ? 1 : 0;
        if (typeof raw === 'number' && Number.isInteger(raw) && raw >= min) out[key] = raw;
        else fail(`expected a whole number of at least ${min}, got ${JSON.stringify(raw)}`);
        break;
      }
      case 'waitTimeout':
      case 'idleTimeout':
      case 'maxLifetime': {
        const ms = durationOf(raw);
        if (ms === undefined) fail(`expected a duration such as "30s" or "10m", got ${JSON.stringify(raw)}`);
        else out[`${key}Ms`] = ms;
        break;
      }
      case 'reset':
        if (typeof raw === 'string' && raw.trim() !== '') out.reset = raw;
        else fail('expected a statement such as "DISCARD ALL"');
        break;
      default:
        problems.push(`${where}: unknown key ${JSON.stringify(key)} (known: ${Object.keys(POOL_KEYS).join(', ')})`);
    }
  }
  return out;
}

function durationOf(raw: unknown): number | undefined {
  if (typeof raw === 'number' && raw >= 0) return Math.round(raw * 1000);
  if (typeof raw !== 'string') return undefined;
  try {
    return parseDuration(raw);
  } catch {
    return undefined;
  }
}

/** `base` with `override` on top, checked: `maxIdle` and `warm` never above `maxSize`. */
export function poolSettings(base: PoolSettings, override?: PoolOverride): PoolSettings {
  const s = { ...base, ...override };
  return Object.freeze({ ...s, maxIdle: Math.min(s.maxIdle, s.maxSize), warm: Math.min(s.warm, s.maxIdle, s.maxSize) });
}

/** Whether two settings are the same in every key. */
export function samePoolSettings(a: PoolSettings, b: PoolSettings): boolean {
  return (Object.keys(a) as (keyof PoolSettings)[]).every((k) => a[k] === b[k]);
}

/** One line for `pgward check` and the listening log. */
export function describePoolSettings(s: PoolSettings): string {
  if (s.mode === 'off') return 'pool off (a new backend connection per session)';
  const d = formatDuration;
  return (
    `pool session: maxSize ${s.maxSize}, waitTimeout ${d(s.waitTimeoutMs)}, maxIdle ${s.maxIdle}, ` +
    `idleTimeout ${d(s.idleTimeoutMs)}, maxLifetime ${d(s.maxLifetimeMs)}, reset ${JSON.stringify(s.reset)}, warm ${s.warm}`
  );
}
