import type { SessionLogger } from '../pipeline/middleware.js';

/** One line a middleware or auth provider logged through `ctx.log` / `channel.log`. */
export interface LogRecord {
  readonly level: 'debug' | 'info' | 'warn' | 'error';
  readonly event: string;
  readonly fields: Readonly<Record<string, unknown>>;
}

/** A session logger that keeps what it is told, in order, for a test to read. */
export function recordingLogger(records: LogRecord[]): SessionLogger {
  const at = (level: LogRecord['level']) => (event: string, fields: Record<string, unknown> = {}) => void records.push({ level, event, fields });
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}
