/**
 * One entry of the backends file (see routing.ts): its key (an exact value, `/regex/flags` or
 * `*`) and its value (a URL, or an object with `url`, templates, `passwordCommand`,
 * `passwordTtl` and `pool`), checked and compiled into a route that builds a target per match.
 * Every problem is reported, not only the first.
 */
import { createHash } from 'node:crypto';
import { parsePoolOverride, type PoolOverride } from '../backend/pool-settings.js';
import { redactUrl, type BackendTarget } from '../backend/url.js';
import { splitCommandLine } from '../util/command-line.js';
import { parseDuration } from '../util/duration.js';
import { CachedCommandValue } from './command-runner.js';
import {
  RouteSubstitutionError,
  Values,
  compileUrl,
  render,
  tokenize,
  type Captures,
  type Piece,
  type RouteContext,
  type Section,
  type UrlTemplate,
} from './route-template.js';

export interface RouteMatch {
  /** The backends-file key that matched (an exact value, `/regex/flags` or `*`). */
  key: string;
  /** A fresh object per match, with the route's user/database/options/application_name applied. */
  target: BackendTarget;
  /** The route's password command; one instance per route key, so its TTL cache is shared. */
  passwordCommand?: CachedCommandValue;
}

export interface Route {
  key: string;
  regex?: RegExp;
  /** A digest of the route as written (key and value). */
  id: string;
  /** Nothing in it is substituted: the same target for every token. */
  fixed: boolean;
  pool?: PoolOverride;
  description: string;
  build(m: RegExpExecArray | null, ctx: RouteContext): RouteMatch;
}

const DEFAULT_PASSWORD_TTL_MS = 10 * 60_000;
const PASSWORD_COMMAND_TIMEOUT_MS = 30_000;
const PASSWORD_COMMAND_MAX_OUTPUT = 64 * 1024;

const OBJECT_KEYS = ['url', 'user', 'database', 'options', 'application_name', 'passwordCommand', 'passwordTtl', 'pool'];
const TEMPLATE_FIELDS = ['user', 'database', 'options', 'application_name'] as const;
type TemplateField = (typeof TEMPLATE_FIELDS)[number];

const FIELD_SECTION: Record<TemplateField, Section> = {
  user: 'text',
  database: 'text',
  options: 'options',
  application_name: 'text',
};

/** What an entry's value says, before its templates are compiled. */
interface EntryValue {
  urlTemplate?: string;
  fields: Partial<Record<TemplateField, string>>;
  commandArgv?: string[];
  ttlMs: number;
  pool?: PoolOverride;
}

/** The key as a log or error shows it (quoted, long keys cut). */
export function showKey(key: string): string {
  return JSON.stringify(key.length > 100 ? `${key.slice(0, 100)}…` : key);
}

/** The route of one entry, or undefined after reporting each of its problems. */
export function compileRoute(key: string, value: unknown, report: (p: string) => void): Route | undefined {
  let problems = 0;
  const fail = (p: string) => {
    problems += 1;
    report(p);
  };
  const { regex, captures } = compileKey(key, fail);
  const entry = readValue(value, fail);
  let url: UrlTemplate | undefined;
  if (entry.urlTemplate !== undefined) {
    url = compileUrl(entry.urlTemplate, captures, fail);
    if (url && entry.commandArgv && url.hasPassword) fail('give either a password in "url" or "passwordCommand", not both');
  }
  const compiledFields: Partial<Record<TemplateField, Piece[]>> = {};
  for (const f of TEMPLATE_FIELDS) {
    const t = entry.fields[f];
    if (t === undefined) continue;
    const pieces = tokenize(t, captures, (p) => fail(`"${f}": ${p}`));
    if (pieces) compiledFields[f] = pieces;
  }
  if (problems > 0 || !url) return undefined;
  return makeRoute(key, value, regex, captures, entry, url, compiledFields);
}

/** A `/regex/flags` key's expression and capture groups; nothing for exact and `*` keys. */
function compileKey(key: string, fail: (p: string) => void): { regex?: RegExp; captures: Captures | null } {
  if (key === '') {
    fail('empty key');
    return { captures: null };
  }
  if (!key.startsWith('/')) return { captures: null };
  const last = key.lastIndexOf('/');
  // `/pattern/flags`, or pg-auth-proxy's `/pattern` (no closing slash, no flags) so its
  // backends files work unchanged.
  const closed = last > 0 && /^[a-z]*$/.test(key.slice(last + 1));
  const pattern = closed ? key.slice(1, last) : key.slice(1);
  const flags = closed ? key.slice(last + 1) : '';
  const stateful = [...flags].filter((f) => 'gyd'.includes(f));
  if (stateful.length > 0) {
    fail(`regular expression flag ${stateful.join('')} is not allowed (use i, m, s, u or v)`);
    return { captures: null };
  }
  try {
    const regex = new RegExp(pattern, flags);
    const probe = new RegExp(`(?:${pattern})|`, flags).exec('')!;
    return { regex, captures: { count: probe.length - 1, names: new Set(Object.keys(probe.groups ?? {})) } };
  } catch (err) {
    fail(`invalid regular expression: ${(err as Error).message.replace(/^Invalid regular expression: /, '')}`);
    return { captures: null };
  }
}

function readValue(value: unknown, fail: (p: string) => void): EntryValue {
  const entry: EntryValue = { fields: {}, ttlMs: DEFAULT_PASSWORD_TTL_MS };
  if (typeof value === 'string') {
    entry.urlTemplate = value;
    return entry;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail('the value must be a backend URL or an object with "url" and optional templates');
    return entry;
  }
  const obj = value as Record<string, unknown>;
  for (const k of Object.keys(obj)) {
    if (!OBJECT_KEYS.includes(k)) fail(`unknown field ${JSON.stringify(k)} (known: ${OBJECT_KEYS.join(', ')})`);
  }
  if (obj.url === undefined) fail('"url" is required');
  else if (typeof obj.url !== 'string') fail('"url" must be a string');
  else entry.urlTemplate = obj.url;
  for (const f of TEMPLATE_FIELDS) {
    const v = obj[f];
    if (v === undefined) continue;
    if (typeof v !== 'string') fail(`"${f}" must be a string`);
    else entry.fields[f] = v;
  }
  if (obj.passwordCommand !== undefined) entry.commandArgv = readPasswordCommand(obj.passwordCommand, fail);
  if (obj.pool !== undefined) {
    const found: string[] = [];
    entry.pool = parsePoolOverride(obj.pool, 'pool', found);
    for (const p of found) fail(p);
  }
  if (obj.passwordTtl !== undefined) {
    if (obj.passwordCommand === undefined) fail('"passwordTtl" is given without "passwordCommand"');
    entry.ttlMs = readTtl(obj.passwordTtl, fail) ?? entry.ttlMs;
  }
  return entry;
}

function readPasswordCommand(cmd: unknown, fail: (p: string) => void): string[] | undefined {
  let argv: string[] | undefined;
  if (typeof cmd === 'string') {
    try {
      argv = splitCommandLine(cmd);
    } catch (err) {
      fail(`"passwordCommand": ${(err as Error).message}`);
    }
  } else if (Array.isArray(cmd) && cmd.every((a) => typeof a === 'string')) {
    argv = [...(cmd as string[])];
  } else {
    fail('"passwordCommand" must be a command line (string) or an argv list');
  }
  if (argv && argv.length === 0) fail('"passwordCommand" is empty');
  return argv;
}

function readTtl(ttl: unknown, fail: (p: string) => void): number | undefined {
  try {
    let ms: number;
    if (typeof ttl === 'number') ms = Math.round(ttl * 1000);
    else if (typeof ttl === 'string') ms = parseDuration(ttl);
    else throw new Error('must be a duration such as "10m"');
    if (!(ms > 0)) throw new Error('must be more than zero');
    return ms;
  } catch (err) {
    fail(`"passwordTtl" ${(err as Error).message.replace(/^invalid duration/, 'is an invalid duration')}`);
    return undefined;
  }
}

function makeRoute(
  key: string,
  value: unknown,
  regex: RegExp | undefined,
  captures: Captures | null,
  entry: EntryValue,
  url: UrlTemplate,
  compiledFields: Partial<Record<TemplateField, Piece[]>>,
): Route {
  const { fields, commandArgv, ttlMs, pool } = entry;
  const urlTemplate = entry.urlTemplate!;
  const passwordCommand = commandArgv
    ? new CachedCommandValue({ argv: commandArgv, timeoutMs: PASSWORD_COMMAND_TIMEOUT_MS, maxOutputBytes: PASSWORD_COMMAND_MAX_OUTPUT }, ttlMs)
    : undefined;
  const kind = regex ? 'regex' : key === '*' ? 'fallback' : 'exact';
  const extras = [
    ...TEMPLATE_FIELDS.filter((f) => fields[f] !== undefined).map((f) => `${f} ${JSON.stringify(fields[f])}`),
    ...(passwordCommand ? [`passwordCommand (${commandArgv![0]}), ttl ${Math.round(ttlMs / 1000)}s`] : []),
  ];
  const description = `${kind} ${showKey(key)} → ${redactUrl(urlTemplate)}${extras.length ? ` (${extras.join(', ')})` : ''}`;
  const literal = (t: string | undefined) => t === undefined || (tokenize(t, captures, () => {}) ?? []).every((p) => p.t === 'lit');
  const fixed = !regex && literal(urlTemplate) && TEMPLATE_FIELDS.every((f) => literal(fields[f]));
  const id = createHash('sha256').update(JSON.stringify([key, value])).digest('base64url').slice(0, 22);
  return {
    key,
    regex,
    id,
    fixed,
    pool,
    description,
    build(m, ctx) {
      const values = new Values(key, m, ctx);
      const target = url.render(values);
      for (const f of TEMPLATE_FIELDS) {
        const pieces = compiledFields[f];
        if (pieces) applyField(target, f, render(pieces, values, FIELD_SECTION[f], f), key);
      }
      target.routeId = id;
      if (pool) target.pool = pool;
      const match: RouteMatch = { key, target };
      if (passwordCommand) {
        match.passwordCommand = passwordCommand;
        target.passwordFromCommand = true;
      }
      return match;
    },
  };
}

/** A rendered template field over the URL's value (an empty user or database is refused). */
function applyField(target: BackendTarget, f: TemplateField, text: string, key: string): void {
  switch (f) {
    case 'user':
      if (text === '') throw new RouteSubstitutionError(key, f, 'the user name is empty');
      target.user = text;
      return;
    case 'database':
      if (text === '') throw new RouteSubstitutionError(key, f, 'the database name is empty');
      target.database = text;
      return;
    case 'options':
      if (text === '') delete target.options;
      else target.options = text;
      return;
    case 'application_name':
      if (text === '') delete target.applicationName;
      else target.applicationName = text;
      return;
  }
}
