import { closeSync, openSync, writeSync } from 'node:fs';

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
  return makeLogger(ORDER[opts.level ?? 'info'], opts.format ?? 'text', redacted(base), out ?? openOutput(opts.destination));
}

/** `base` is already redacted: a line only checks its own fields' names. */
function makeLogger(min: number, format: LogFormat, base: Record<string, unknown>, sink: Output): Logger {
  const emit = (level: LogLevel, event: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] < min) return;
    sink.write(render(format, level, event, fields ? { ...base, ...redacted(fields) } : base) + '\n');
  };
  return {
    trace: (e, f) => emit('trace', e, f),
    debug: (e, f) => emit('debug', e, f),
    info: (e, f) => emit('info', e, f),
    warn: (e, f) => emit('warn', e, f),
    error: (e, f) => emit('error', e, f),
    child: (fields) => makeLogger(min, format, { ...base, ...redacted(fields) }, sink),
    reopen: () => sink.reopen?.(),
  };
}

function redacted(fields: Record<string, unknown>): Record<string, unknown> {
  let out = fields;
  for (const k in fields) {
    if (!SECRET_FIELD.test(k)) continue;
    if (out === fields) out = { ...fields };
    out[k] = '[redacted]';
  }
  return out;
}

/** Lines waiting for the end of the event-loop turn; written at once when this much is waiting. */
const BATCH_BYTES = 64 * 1024;

/** Outputs with lines waiting: written out synchronously when the process exits, however it exits. */
const unwritten = new Set<LineBatch>();
let exitHook = false;

/**
 * Lines written together, one write per event-loop turn, instead of one synchronous write per
 * line (stdout to a pipe or file and the log file are written synchronously): a login writes a
 * few lines, and a burst of logins shares the write. The order of lines is kept; what waits is
 * written at the end of the turn (setImmediate), when 64 KiB are waiting, and on process exit
 * (including an uncaught exception), so nothing is lost but to SIGKILL.
 */
class LineBatch implements Output {
  private lines: string[] = [];
  private bytes = 0;

  constructor(
    private readonly sink: (text: string) => void,
    private readonly onReopen?: () => void,
  ) {}

  write(line: string): void {
    this.lines.push(line);
    this.bytes += line.length;
    if (this.bytes >= BATCH_BYTES) return this.flush();
    if (this.lines.length > 1) return;
    unwritten.add(this);
    if (!exitHook) {
      exitHook = true;
      process.once('exit', () => {
        for (const batch of unwritten) batch.flush();
      });
    }
    setImmediate(() => this.flush()).unref();
  }

  flush(): void {
    unwritten.delete(this);
    if (this.lines.length === 0) return;
    const text = this.lines.length === 1 ? this.lines[0]! : this.lines.join('');
    this.lines = [];
    this.bytes = 0;
    this.sink(text);
  }

  reopen(): void {
    this.flush();
    this.onReopen?.();
  }
}

/**
 * Stdout, or a file opened for appending. `reopen` lets logrotate's move-then-signal work: lines
 * logged before it go to the old file, later ones to a fresh file at the same path. A file that
 * cannot be written is reported once on stderr and its lines go to stdout, so nothing is lost.
 */
function openOutput(destination?: string): Output {
  const stdout = (text: string) => void process.stdout.write(text);
  if (!destination) return new LineBatch(stdout);
  let fd: number | undefined;
  const failed = (err: unknown) => {
    process.stderr.write(`pgward: cannot write the log file ${destination} (${(err as Error).message}); logging to stdout\n`);
    fd = undefined;
  };
  const open = () => {
    try {
      fd = openSync(destination, 'a');
    } catch (err) {
      failed(err);
    }
  };
  open();
  return new LineBatch(
    (text) => {
      if (fd === undefined) return stdout(text);
      try {
        writeFully(fd, text);
      } catch (err) {
        const broken = fd;
        failed(err);
        closeQuietly(broken);
        stdout(text);
      }
    },
    () => {
      const old = fd;
      open();
      closeQuietly(old);
    },
  );
}

function closeQuietly(fd: number | undefined): void {
  try {
    if (fd !== undefined) closeSync(fd);
  } catch {
    // Nothing to do: the lines went elsewhere already.
  }
}

function writeFully(fd: number, text: string): void {
  const bytes = Buffer.from(text, 'utf8');
  for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off);
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
