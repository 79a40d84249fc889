import { readFileSync } from 'node:fs';
import net from 'node:net';
import { parseDuration } from '../util/duration.js';
import { parseYamlOrJson } from '../util/yaml-syntax.js';
import { envName, kebab, START_FLAGS, type FlagSpec } from './flags.js';

export type RawValue = string | boolean | number | string[];
export type Settings = Record<string, RawValue | undefined>;

export class ConfigError extends Error {
  /**
   * @param partial the configuration as far as it could be read, when the problems leave one
   * (`pgward check` goes on to load its keys, backends and plugins, to list their problems too).
   */
  constructor(readonly problems: string[], readonly partial?: unknown) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
  }
}

export interface ParsedArgs {
  flags: Settings;
  verbosity: number;
  positional: string[];
}

const byName = new Map<string, FlagSpec>();
for (const f of START_FLAGS) {
  byName.set(f.name, f);
  byName.set(kebab(f.name), f);
}

/** Parses `--name value`, `--name=value`, `--bool`, `--no-bool`, `-v`/`-vv`/`--verbose`; camelCase or kebab-case. */
export function parseArgs(argv: readonly string[], problems: string[]): ParsedArgs {
  const flags: Settings = {};
  const positional: string[] = [];
  let verbosity = 0;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (/^-v+$/.test(a)) {
      verbosity += a.length - 1;
      continue;
    }
    // pg-auth-proxy's spelling, so its command lines work unchanged.
    if (a === '--verbose') {
      verbosity += 1;
      continue;
    }
    if (!a.startsWith('--')) {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    let key = a.slice(2, eq < 0 ? undefined : eq);
    let value: string | undefined = eq < 0 ? undefined : a.slice(eq + 1);
    let negated = false;
    if (!byName.has(key) && key.startsWith('no-') && byName.get(key.slice(3))?.type === 'boolean') {
      key = key.slice(3);
      negated = true;
    }
    const spec = byName.get(key);
    if (!spec) {
      const near = nearestFlag(key);
      problems.push(`unknown flag --${key}${near ? ` (did you mean --${near}?)` : ''}`);
      continue;
    }
    if (spec.type === 'boolean' && value === undefined) {
      flags[spec.name] = !negated;
      continue;
    }
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) {
        problems.push(`flag --${key} needs a value`);
        continue;
      }
    }
    // List flags may be repeated: --signingKeys a.pem --signingKeys b.json
    const prev = flags[spec.name];
    flags[spec.name] = spec.type === 'list' && typeof prev === 'string' ? `${prev},${value}` : value;
  }
  return { flags, verbosity, positional };
}

function fromEnv(env: NodeJS.ProcessEnv): Settings {
  const out: Settings = {};
  for (const f of START_FLAGS) {
    const v = env[envName(f.name)];
    if (v !== undefined) out[f.name] = v;
  }
  return out;
}

/** Reads a YAML/JSON config file; keys may be camelCase or kebab-case. */
export function readConfigFile(path: string, problems: string[]): { settings: Settings; extra: Record<string, unknown> } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    problems.push(`${path}: cannot read the file (${e.code ?? e.message})`);
    return { settings: {}, extra: {} };
  }
  // yaml's own messages quote the offending line, which may hold a password: positions only.
  const parsed = parseYamlOrJson(path, text);
  if (parsed.problems.length > 0) {
    problems.push(...parsed.problems);
    return { settings: {}, extra: {} };
  }
  const doc = parsed.value;
  if (doc === null || doc === undefined) return { settings: {}, extra: {} };
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    problems.push(`${path}: expected a mapping of settings at the top level`);
    return { settings: {}, extra: {} };
  }
  const settings: Settings = {};
  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
    // `auth:` may be a provider name or a mapping with the provider's own settings.
    if (k === 'auth' && v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const { provider, ...rest } = v as Record<string, unknown>;
      if (provider !== undefined) settings.auth = provider as RawValue;
      extra.auth = rest;
      continue;
    }
    const spec = byName.get(k);
    if (spec) settings[spec.name] = v as RawValue;
    else extra[k] = v;
  }
  return { settings, extra };
}

/** Converts one raw value to its flag's type; records a problem naming where it came from. */
function coerce(spec: FlagSpec, raw: RawValue, where: string, problems: string[]): RawValue | undefined {
  const bad = (why: string) => {
    problems.push(`${where}: ${spec.name}: ${why}`);
    return undefined;
  };
  switch (spec.type) {
    case 'boolean':
      if (typeof raw === 'boolean') return raw;
      if (/^(true|1|yes|on)$/i.test(String(raw))) return true;
      if (/^(false|0|no|off)$/i.test(String(raw))) return false;
      return bad(`expected true or false, got "${raw}"`);
    case 'integer': {
      const n = Number(raw);
      return Number.isInteger(n) && n >= 0 ? n : bad(`expected a whole number, got "${raw}"`);
    }
    case 'duration':
      try {
        return typeof raw === 'number' ? raw * 1000 : parseDuration(String(raw));
      } catch (err) {
        return bad((err as Error).message);
      }
    case 'list':
      return Array.isArray(raw) ? raw.map(String) : String(raw).split(',').map((s) => s.trim()).filter(Boolean);
    case 'string':
      return typeof raw === 'string' ? raw : bad(`expected text, got ${JSON.stringify(raw)}`);
  }
}

export interface LoadedSettings {
  values: Record<string, RawValue | undefined>;
  /** Config-file keys that are not flags (pipeline, plugins, auth…). */
  extra: Record<string, unknown>;
  verbosity: number;
  /** Problems found so far; the caller adds its own and reports them all at once. */
  problems: string[];
}

/** Merges flag > env > file > default into typed values; values with problems are left undefined. */
export function loadSettings(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): LoadedSettings {
  const problems: string[] = [];
  const args = parseArgs(argv, problems);
  if (args.positional.length > 0) problems.push(`unexpected argument "${args.positional[0]}"`);
  const envSettings = fromEnv(env);
  const configPath = (args.flags.config ?? envSettings.config) as string | undefined;
  const file = configPath ? readConfigFile(configPath, problems) : { settings: {}, extra: {} };
  const values: Record<string, RawValue | undefined> = {};
  for (const spec of START_FLAGS) {
    const sources: [Settings, string][] = [
      [args.flags, 'command line'],
      [envSettings, `environment ${envName(spec.name)}`],
      [file.settings, configPath ?? 'config file'],
    ];
    const found = sources.find(([s]) => s[spec.name] !== undefined);
    const raw = found ? found[0][spec.name]! : spec.default;
    values[spec.name] = raw === undefined ? undefined : coerce(spec, raw, found?.[1] ?? 'default', problems);
  }
  return { values, extra: file.extra, verbosity: args.verbosity, problems };
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  return host === '::1';
}

/** The start flag closest to a misspelt one (at most two edits, ignoring case and dashes), if any. */
export function nearestFlag(typed: string): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/-/g, '');
  const t = norm(typed);
  let best: { name: string; d: number } | undefined;
  for (const f of START_FLAGS) {
    const d = editDistance(t, norm(f.name));
    if (d <= Math.min(2, Math.floor(t.length / 3)) && (!best || d < best.d)) best = { name: f.name, d };
  }
  return best?.name;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}
