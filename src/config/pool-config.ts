import {
  DEFAULT_POOL_SETTINGS,
  parsePoolOverride,
  poolSettings,
  type PoolOverride,
  type PoolSettings,
} from '../backend/pool-settings.js';

/** The `--pool…` flags (from the command line, environment or a top-level key), by pool key. */
const FLAG_OF = {
  mode: 'poolMode',
  maxSize: 'poolMaxSize',
  waitTimeout: 'poolWaitTimeout',
  maxIdle: 'poolMaxIdle',
  idleTimeout: 'poolIdleTimeout',
  maxLifetime: 'poolMaxLifetime',
  reset: 'poolReset',
  warm: 'poolWarm',
} as const;

/**
 * The global pool settings: defaults, then the config file's `pool:` mapping, then the
 * `--pool…` flags (which the loader already took from the command line, environment or file).
 */
export function parsePoolConfig(file: unknown, values: Record<string, unknown>, problems: string[]): PoolSettings {
  const fromFile = file === undefined ? {} : parsePoolOverride(file, 'pool', problems);
  let flags: PoolOverride = {};
  for (const [key, flag] of Object.entries(FLAG_OF)) {
    const v = values[flag];
    if (v === undefined) continue;
    // The loader gives durations in ms; the pool parser reads numbers as seconds.
    const raw = key.endsWith('Timeout') || key === 'maxLifetime' ? `${v as number}ms` : v;
    const found: string[] = [];
    flags = { ...flags, ...parsePoolOverride({ [key]: raw }, flag, found) };
    for (const p of found) problems.push(p.replace(`${flag}.${key}:`, `${flag}:`));
  }
  return poolSettings(DEFAULT_POOL_SETTINGS, { ...fromFile, ...flags });
}
