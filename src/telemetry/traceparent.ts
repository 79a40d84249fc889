/**
 * W3C trace context in: a client may pass a `traceparent` through the startup `options`
 * (`-c pgward.traceparent=…`) or `application_name`; the session span then joins that trace, and
 * the option is removed before the startup reaches the backend.
 */
import type { SpanContext } from '@opentelemetry/api';

/** Startup option carrying a W3C traceparent: `options='-c pgward.traceparent=00-…'`. */
export const TRACEPARENT_OPTION = 'pgward.traceparent';

/**
 * Parses a W3C `traceparent` (version-traceid-parentid-flags, lower-case hex). Returns the remote
 * span context, or undefined when the value is not valid: wrong shape, upper case, version `ff`,
 * an all-zero trace or parent id, or (version 00) anything after the flags.
 */
export function parseTraceparent(value: string | undefined): SpanContext | undefined {
  if (value === undefined) return undefined;
  const m = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/.exec(value.trim());
  if (!m) return undefined;
  const [, version, traceId, spanId, flags, rest] = m as unknown as [string, string, string, string, string, string | undefined];
  if (version === 'ff') return undefined;
  if (version === '00' && rest !== undefined) return undefined;
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined;
  return { traceId, spanId, traceFlags: parseInt(flags, 16) & 0xff, isRemote: true };
}

/**
 * Splits a startup `options` value into arguments the way PostgreSQL does: whitespace separates,
 * a backslash takes the next character literally.
 */
function splitOptions(options: string): string[] {
  const args: string[] = [];
  let cur = '';
  let has = false;
  for (let i = 0; i < options.length; i++) {
    const ch = options[i] as string;
    if (ch === '\\' && i + 1 < options.length) {
      cur += options[++i];
      has = true;
    } else if (/\s/.test(ch)) {
      if (has) args.push(cur);
      cur = '';
      has = false;
    } else {
      cur += ch;
      has = true;
    }
  }
  if (has) args.push(cur);
  return args;
}

/** The `name=value` settings of an options value (`-c n=v`, `-cn=v`, `--n=v`), each with the indices of the arguments it spans. */
function optionSettings(args: readonly string[]): { name: string; value: string; from: number; to: number }[] {
  const out: { name: string; value: string; from: number; to: number }[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    let setting: string | undefined;
    let to = i;
    if (arg === '-c' && i + 1 < args.length) setting = args[(to = i + 1)];
    else if (arg.startsWith('-c')) setting = arg.slice(2);
    else if (arg.startsWith('--')) setting = arg.slice(2);
    const eq = setting?.indexOf('=') ?? -1;
    if (setting !== undefined && eq > 0) {
      out.push({ name: setting.slice(0, eq).toLowerCase(), value: setting.slice(eq + 1), from: i, to });
    }
    i = to;
  }
  return out;
}

/** Cheap pre-check before splitting options (setting names are case-insensitive). */
const mentionsTraceparent = (options: string) => /pgward\.traceparent/i.test(options);

const TRACEPARENT_IN_TEXT = /(?:^|[^0-9a-f-])([0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2})(?![0-9a-f-])/;

/**
 * The traceparent a client passed in its startup parameters, if any and valid: first
 * `options` (`-c pgward.traceparent=…` or `--pgward.traceparent=…`), then `application_name`
 * (the whole value, or a traceparent inside it such as `app traceparent=00-…-01`).
 */
export function traceparentFromStartup(params: ReadonlyMap<string, string>): string | undefined {
  const options = params.get('options');
  if (options !== undefined && mentionsTraceparent(options)) {
    for (const s of optionSettings(splitOptions(options))) {
      if (s.name === TRACEPARENT_OPTION && parseTraceparent(s.value)) return s.value;
    }
  }
  const app = params.get('application_name');
  if (app !== undefined && app.length >= 55) {
    const m = TRACEPARENT_IN_TEXT.exec(app);
    if (m && parseTraceparent(m[1])) return m[1];
  }
  return undefined;
}

/**
 * `options` without its `pgward.traceparent` settings, for forwarding to a backend that may
 * refuse unknown settings. The remaining arguments keep their escapes; undefined when none remain.
 */
export function stripTraceparentOption(options: string): string | undefined {
  if (!mentionsTraceparent(options)) return options;
  const args = splitOptions(options);
  const drop = new Set<number>();
  for (const s of optionSettings(args)) {
    if (s.name === TRACEPARENT_OPTION) for (let i = s.from; i <= s.to; i++) drop.add(i);
  }
  const kept = args.filter((_, i) => !drop.has(i)).map((a) => a.replace(/[\\\s]/g, (c) => `\\${c}`));
  return kept.length > 0 ? kept.join(' ') : undefined;
}
