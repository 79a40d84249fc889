import { openSync } from 'node:fs';
import { PreparedFields } from './log-fields.js';
import { FdWriter } from './log-output.js';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';
export type LogFormat = 'text' | 'json' | 'fluent';
const ORDER: Record<LogLevel, number> = { trace: 0, debug: 1, info: 2, warn: 3, error: 4 };

/** Field names whose values are never written, whoever passes them. */
const SECRET_FIELD = /pass(word)?|secret|token|credential|authorization|cred$/i;

export interface Logger {
  trace(event: string, fields?: Record<string, unknown>): void;
  debug(event: string, fields?: Record<string, unknown>): void;
  info(event: string, fields?: Record<string, unknown>): void;
  warn(event: string, fields?: Record<string, unknown>): void;
  error(event: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
  /**
   * For an event logged again and again with the same leading fields (one a statement, say):
   * `fixed` is rendered once, here, and each call renders only its own fields. A call writes the
   * line `level(event, { ...fixed, ...fields })` would. It reads `fields` during the call and keeps
   * nothing of the object: the caller may fill the same object in again for the next line.
   */
  prepare?(level: LogLevel, event: string, fixed: Record<string, unknown>): (fields: Record<string, unknown>) => void;
  /** Reopens the log file (after rotation moved it away); a no-op for stdout. */
  reopen?(): void;
}

export interface LogOptions {
  level?: LogLevel;
  format?: LogFormat;
  /** File path; stdout when absent. */
  destination?: string;
}

interface Output {
  write(line: string): void;
  reopen?(): void;
}

/** One event a line, in text, JSON or Fluent-forward-style JSON; secrets redacted by field name. */
export function createLogger(opts: LogOptions = {}, base: Record<string, unknown> = {}, out?: Output): Logger {
  const format = opts.format ?? 'text';
  return new FieldLogger(ORDER[opts.level ?? 'info'], format, redacted(base), out ?? openOutput(opts.destination, format));
}

/**
 * A logger with its fields. `base` is already redacted: a line only checks its own fields' names.
 * The methods live on the prototype, not in closures per logger: every session holds child
 * loggers for its whole life, and eight closures with their context cost each some 600 bytes.
 * Call them on the logger (`log.info(...)`), as the `Logger` interface's methods.
 */
class FieldLogger implements Logger {
  constructor(
    private readonly min: number,
    private readonly format: LogFormat,
    private readonly base: Record<string, unknown>,
    private readonly sink: Output,
  ) {}

  trace(event: string, fields?: Record<string, unknown>): void {
    this.emit('trace', event, fields);
  }
  debug(event: string, fields?: Record<string, unknown>): void {
    this.emit('debug', event, fields);
  }
  info(event: string, fields?: Record<string, unknown>): void {
    this.emit('info', event, fields);
  }
  warn(event: string, fields?: Record<string, unknown>): void {
    this.emit('warn', event, fields);
  }
  error(event: string, fields?: Record<string, unknown>): void {
    this.emit('error', event, fields);
  }

  child(fields: Record<string, unknown>): Logger {
    return new FieldLogger(this.min, this.format, Object.assign({}, this.base, redacted(fields)), this.sink);
  }

  reopen(): void {
    this.sink.reopen?.();
  }

  prepare(level: LogLevel, event: string, fixed: Record<string, unknown>): (fields: Record<string, unknown>) => void {
    if (ORDER[level] < this.min) return () => {};
    const slow = (fields: Record<string, unknown>) => this.emit(level, event, { ...fixed, ...fields });
    const sink = this.sink;
    return preparedLine(this.format, level, event, { ...this.base, ...redacted(fixed) }, (line) => sink.write(line), slow);
  }

  private emit(level: LogLevel, event: string, fields?: Record<string, unknown>): void {
    if (ORDER[level] < this.min) return;
    this.sink.write(render(this.format, level, event, this.base, fields ? redacted(fields) : undefined) + '\n');
  }
}

/** Field names seen, and whether each is a secret's: the same few names come line after line. */
const secretNames = new Map<string, boolean>();

function isSecretName(name: string): boolean {
  let secret = secretNames.get(name);
  if (secret === undefined) {
    secret = SECRET_FIELD.test(name);
    if (secretNames.size < 4096) secretNames.set(name, secret);
  }
  return secret;
}

function redacted(fields: Record<string, unknown>): Record<string, unknown> {
  let out = fields;
  for (const k in fields) {
    if (!isSecretName(k)) continue;
    if (out === fields) out = { ...fields };
    out[k] = '[redacted]';
  }
  return out;
}

/**
 * Stdout, or a file opened for appending, each written through an {@link FdWriter} (at once, never
 * blocking, nothing lost at exit). Lines are not batched per event-loop turn: a login's two lines
 * fall in different turns, so that would save next to nothing, and it would put every line after
 * the socket writes of its turn (a client could see its session before the log has it).
 * `reopen` lets logrotate's move-then-signal work: lines logged before it stay in the moved file,
 * later ones go to a fresh file at the same path. A file that cannot be written is reported once
 * on stderr and its lines go to stdout, so nothing is lost.
 */
function openOutput(destination: string | undefined, format: LogFormat): Output {
  const droppedLine = (lines: number) => render(format, 'warn', 'log lines dropped: the log output was not read fast enough', { lines }) + '\n';
  const stdout = stdoutWriter(droppedLine);
  if (!destination) return { write: (text) => stdout.write(text) };
  let file: FdWriter | undefined;
  const failed = (err: Error, unwritten = '') => {
    process.stderr.write(`pgward: cannot write the log file ${destination} (${err.message}); logging to stdout\n`);
    file = undefined;
    if (unwritten) stdout.write(unwritten);
  };
  const open = () => {
    try {
      file = new FdWriter(openSync(destination, 'a'), failed, droppedLine, true);
    } catch (err) {
      failed(err as Error);
    }
  };
  open();
  return {
    write: (text) => (file ?? stdout).write(text),
    reopen: () => {
      const old = file;
      open();
      old?.close();
    },
  };
}

let sharedStdout: FdWriter | { write(text: string): void } | undefined;

/** One writer for fd 1 in the process, so lines of every logger keep their order. */
function stdoutWriter(droppedLine: (n: number) => string): { write(text: string): void } {
  if (sharedStdout) return sharedStdout;
  // Creating process.stdout puts a pipe on fd 1 in non-blocking mode (libuv), so a full pipe
  // makes a write return EAGAIN instead of stopping the event loop.
  void process.stdout;
  sharedStdout = new FdWriter(
    1,
    (err) => {
      process.stderr.write(`pgward: cannot write the log to stdout (${err.message}); log lines are dropped\n`);
      sharedStdout = { write: () => {} };
    },
    droppedLine,
  );
  return sharedStdout;
}

const LEVEL_TEXT: Record<LogLevel, string> = { trace: 'TRACE', debug: 'DEBUG', info: 'INFO ', warn: 'WARN ', error: 'ERROR' };
const NEEDS_QUOTES = /\s|"/;

// A login logs a few lines and makes two child loggers: object spreads of a line's fields cost
// several microseconds in V8 (a fresh shape each time), so the base fields and the line's are
// walked in turn instead, as if merged (a line's field overrides a base one of the same name).
function render(format: LogFormat, level: LogLevel, event: string, base: Record<string, unknown>, fields = NO_FIELDS): string {
  const now = Date.now();
  if (format === 'fluent') return JSON.stringify(['pgward', Math.floor(now / 1000), { level, msg: event, ...base, ...fields }]);
  const time = isoTime(now);
  if (format === 'json') return JSON.stringify({ time, level, msg: event, ...base, ...fields });
  let line = `${time} ${LEVEL_TEXT[level]} ${event}`;
  for (const k in base) line += pair(k, Object.hasOwn(fields, k) ? fields[k] : base[k]);
  for (const k in fields) if (!Object.hasOwn(base, k)) line += pair(k, fields[k]);
  return line;
}

const NO_FIELDS: Record<string, unknown> = Object.freeze({});

function pair(name: string, value: unknown): string {
  if (value === undefined) return '';
  if (typeof value === 'string') return nameText(name) + textValue(value);
  // A finite number reads the same either way; numberText() skips JSON.stringify's generic path.
  if (typeof value === 'number' && Number.isFinite(value)) return nameText(name) + numberText(value);
  return nameText(name) + JSON.stringify(value);
}

/** ` name=` for each field name seen: the same few names come line after line. */
const nameTexts = new Map<string, string>();

function nameText(name: string): string {
  let text = nameTexts.get(name);
  if (text === undefined) {
    text = ` ${name}=`;
    if (nameTexts.size < 4096) nameTexts.set(name, text);
  }
  return text;
}

/**
 * A string field's value as a text line writes it: as it is, or JSON-quoted when it holds
 * whitespace or a quote. One scan instead of a regex test and JSON.stringify (a statement per
 * line): plain text (see {@link plainText}) reads the same quoted by hand; anything else takes the
 * general path, which writes the same text.
 */
function textValue(value: string): string {
  const plain = plainText(value);
  if (plain === NOT_PLAIN) return NEEDS_QUOTES.test(value) ? JSON.stringify(value) : value;
  return plain === PLAIN_WITH_SPACE ? '"' + value + '"' : value;
}

/** A string as JSON.stringify writes it, the same way by hand for plain text (see {@link plainText}). */
function jsonString(value: string): string {
  return plainText(value) === NOT_PLAIN ? JSON.stringify(value) : '"' + value + '"';
}

const NOT_PLAIN = 0;
const PLAIN = 1;
const PLAIN_WITH_SPACE = 2;

/** Whether `value` is printable ASCII with no quote or backslash (which JSON writes as it is), and with a space. */
function plainText(value: string): typeof NOT_PLAIN | typeof PLAIN | typeof PLAIN_WITH_SPACE {
  let space = false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 32) space = true;
    else if (c < 32 || c === 34 || c === 92 || c > 126) return NOT_PLAIN;
  }
  return space ? PLAIN_WITH_SPACE : PLAIN;
}

/**
 * `String(v)` for a finite number, made without V8's shortest-digits search when `v` has at most
 * three decimals (a duration in ms, rounded to µs): then its digits are those of the integer
 * `v × 1000`, since a decimal of at most 15 digits is the shortest that reads back as its double.
 */
function numberText(v: number): string {
  const n = Math.round(v * 1000);
  if (n / 1000 !== v || n === 0 || n >= 1e15 || n <= -1e15) return String(v);
  const abs = n < 0 ? -n : n;
  const whole = (abs - (abs % 1000)) / 1000;
  const frac = abs % 1000;
  const sign = n < 0 ? '-' : '';
  return frac === 0 ? sign + whole : sign + whole + fractionText(frac);
}

/** `.d`, `.dd` or `.ddd` for 1 to 999 thousandths, trailing zeros left out; each made once (a duration's, line after line). */
const fractionTexts: string[] = [];

function fractionText(frac: number): string {
  return (fractionTexts[frac] ??= '.' + String(1000 + frac).slice(1).replace(/0+$/, ''));
}

// Lines come many to a millisecond: the time text is made once per millisecond.
let timeMs = NaN;
let timeText = '';

function isoTime(ms: number): string {
  if (ms !== timeMs) {
    timeMs = ms;
    timeText = new Date(ms).toISOString();
  }
  return timeText;
}

/** A logger that writes nothing (tests, embedding). */
export const silentLogger: Logger = {
  trace() {},
  debug() {},
  info() {},
  warn() {},
  error() {},
  child: () => silentLogger,
};

/** Names a line places itself: a field of one of these names takes the general path. */
const PLACED = new Set(['time', 'level', 'msg']);

/**
 * The renderer behind `Logger.prepare`: `leading` (the base fields, then the fixed ones, already
 * redacted) is rendered once. A call renders its own fields after it; a field it cannot render
 * the same way here (a name already used, a secret's name, an object's value) goes to `slow`,
 * the general path, which writes the same line.
 */
function preparedLine(
  format: LogFormat,
  level: LogLevel,
  event: string,
  leading: Record<string, unknown>,
  write: (line: string) => void,
  slow: (fields: Record<string, unknown>) => void,
): (fields: Record<string, unknown>) => void {
  const taken = new Set([...PLACED, ...Object.keys(leading)]);
  if (Object.keys(leading).some((k) => PLACED.has(k))) return slow;
  // Names that passed both checks: the same few come with every call.
  const fine = new Set<string>();
  const renders = (k: string): boolean => {
    if (fine.has(k)) return true;
    if (taken.has(k) || isSecretName(k)) return false;
    if (fine.size < 64) fine.add(k);
    return true;
  };
  if (format === 'text') {
    let head = ` ${LEVEL_TEXT[level]} ${event}`;
    for (const k in leading) head += pair(k, leading[k]);
    const text = new PreparedFields(head, '\n', renders, pair);
    return (fields) => {
      const line = text.line(fields);
      if (line === undefined) return slow(fields);
      write(isoTime(Date.now()) + line);
    };
  }
  const members = JSON.stringify(leading).slice(1, -1);
  const head = `"level":${JSON.stringify(level)},"msg":${JSON.stringify(event)}${members ? ',' + members : ''}`;
  const json = new PreparedFields(format === 'fluent' ? `,{${head}` : `",${head}`, format === 'fluent' ? '}]\n' : '}\n', renders, jsonMember);
  return (fields) => {
    const line = json.line(fields);
    if (line === undefined) return slow(fields);
    const now = Date.now();
    if (format === 'fluent') write(`["pgward",${Math.floor(now / 1000)}` + line);
    else write(`{"time":"${isoTime(now)}` + line);
  };
}

/** `,"name":value` for a JSON line; nothing for undefined, undefined for a value jsonValue cannot write. */
function jsonMember(k: string, v: unknown): string | undefined {
  if (v === undefined) return '';
  const text = jsonValue(v);
  return text === undefined ? undefined : `,${JSON.stringify(k)}:${text}`;
}

/** A string, number, boolean or null as JSON.stringify writes it inside an object; undefined for anything else. */
function jsonValue(v: unknown): string | undefined {
  switch (typeof v) {
    case 'string':
      return jsonString(v);
    case 'number':
      return Number.isFinite(v) ? numberText(v) : 'null';
    case 'boolean':
      return v ? 'true' : 'false';
    default:
      return v === null ? 'null' : undefined;
  }
}
