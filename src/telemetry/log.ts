import { createWriteStream, type WriteStream } from 'node:fs';

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
  const min = ORDER[opts.level ?? 'info'];
  const format = opts.format ?? 'text';
  const sink: Output = out ?? openOutput(opts.destination);
  const emit = (level: LogLevel, event: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] < min) return;
    const all = { ...base, ...fields };
    for (const k of Object.keys(all)) if (SECRET_FIELD.test(k)) all[k] = '[redacted]';
    sink.write(render(format, level, event, all) + '\n');
  };
  return {
    trace: (e, f) => emit('trace', e, f),
    debug: (e, f) => emit('debug', e, f),
    info: (e, f) => emit('info', e, f),
    warn: (e, f) => emit('warn', e, f),
    error: (e, f) => emit('error', e, f),
    child: (fields) => createLogger(opts, { ...base, ...fields }, sink),
    reopen: () => sink.reopen?.(),
  };
}

/**
 * Stdout, or a file opened for appending. `reopen` lets logrotate's move-then-signal work: lines
 * already queued finish in the old file, new ones go to a fresh file at the same path. A file that
 * cannot be written is reported once on stderr and its lines go to stdout, so nothing is lost.
 */
function openOutput(destination?: string): Output {
  if (!destination) return { write: (l) => void process.stdout.write(l) };
  let failed = false;
  const open = (): WriteStream => {
    const s = createWriteStream(destination, { flags: 'a' });
    s.on('error', (err) => {
      if (!failed) process.stderr.write(`pgward: cannot write the log file ${destination} (${err.message}); logging to stdout\n`);
      failed = true;
    });
    return s;
  };
  let stream = open();
  return {
    write: (l) => void (failed ? process.stdout.write(l) : stream.write(l)),
    reopen: () => {
      const old = stream;
      failed = false;
      stream = open();
      old.end();
    },
  };
}

function render(format: LogFormat, level: LogLevel, event: string, fields: Record<string, unknown>): string {
  const time = new Date().toISOString();
  if (format === 'json') return JSON.stringify({ time, level, msg: event, ...fields });
  if (format === 'fluent') return JSON.stringify(['pgward', Math.floor(Date.now() / 1000), { level, msg: event, ...fields }]);
  const kv = Object.entries(fields)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s|"/.test(v) ? v : JSON.stringify(v)}`)
    .join(' ');
  return `${time} ${level.toUpperCase().padEnd(5)} ${event}${kv ? ' ' + kv : ''}`;
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
