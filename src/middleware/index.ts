import type { Middleware } from '../pipeline/middleware.js';
import { queryLog } from './query-log.js';
import { checkRemoteAddrParam, remoteAddr } from './remote-addr.js';

type OptionType = 'boolean' | 'non-negative number' | 'positive integer' | 'string';

/** What each option of a built-in accepts; anything else is a configuration error. */
type OptionSchema = Record<string, { type: OptionType; check?: (value: never) => string | undefined }>;

/**
 * Checks `options` (a pipeline entry's options from config: absent, null or a plain object)
 * against `schema`; throws one Error listing every problem.
 */
function validate(name: string, options: unknown, schema: OptionSchema): Record<string, unknown> {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new Error(`${name}: options must be a mapping of option names to values, not ${describe(options)}`);
  }
  const problems: string[] = [];
  const known = Object.keys(schema);
  for (const [key, value] of Object.entries(options)) {
    const spec = Object.hasOwn(schema, key) ? schema[key] : undefined;
    if (!spec) {
      problems.push(`unknown option "${key}" (known: ${known.join(', ')})`);
      continue;
    }
    if (!hasType(value, spec.type)) {
      problems.push(`option "${key}" must be a ${spec.type}, not ${describe(value)}`);
      continue;
    }
    const extra = spec.check?.(value as never);
    if (extra) problems.push(`option "${key}" ${extra}`);
  }
  if (problems.length > 0) throw new Error(`${name}: ${problems.join('; ')}`);
  return options as Record<string, unknown>;
}

function hasType(value: unknown, type: OptionType): boolean {
  switch (type) {
    case 'boolean':
      return typeof value === 'boolean';
    case 'string':
      return typeof value === 'string';
    case 'non-negative number':
      return typeof value === 'number' && Number.isFinite(value) && value >= 0;
    case 'positive integer':
      return typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)}`;
  if (typeof value === 'object') return 'a mapping';
  return `${typeof value} ${String(value)}`;
}

/**
 * The built-in middleware by pipeline name, each a factory taking that entry's options from
 * config (`- query-log` gives undefined, `- query-log: { slowMs: 100 }` an object). Bad options
 * throw an Error that names the middleware and lists every problem. (A null-prototype object:
 * `BUILTIN_MIDDLEWARE['constructor']` is undefined.)
 */
export const BUILTIN_MIDDLEWARE: Record<string, (options: unknown) => Middleware> = Object.assign(Object.create(null), {
  'query-log': (options) => {
    const o = validate('query-log', options, {
      redact: { type: 'boolean' },
      slowMs: { type: 'non-negative number' },
      maxStatementLength: { type: 'positive integer' },
    });
    return queryLog({
      redact: o.redact as boolean | undefined,
      slowMs: o.slowMs as number | undefined,
      maxStatementLength: o.maxStatementLength as number | undefined,
    });
  },
  'remote-addr': (options) => {
    const o = validate('remote-addr', options, {
      param: { type: 'string', check: (v: string) => checkRemoteAddrParam(v) },
    });
    return remoteAddr({ param: o.param as string | undefined });
  },
} satisfies Record<string, (options: unknown) => Middleware>);
