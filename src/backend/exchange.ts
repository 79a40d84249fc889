import { backendMessage, fe, PgError, type TransactionStatus } from '../protocol/index.js';
import { FrameReader } from '../transport/socket-io.js';
import type { BackendConnection } from './login.js';

/** The backend connection cannot be used any more: it closed, failed, said FATAL or took too long. */
export class BackendLost extends Error {
  constructor(readonly why: string) {
    super(`backend connection lost: ${why}`);
    this.name = 'BackendLost';
  }
}

export interface ExchangeResult {
  status: TransactionStatus;
  /** The first ErrorResponse (not FATAL) the requests got; the connection is still usable. */
  error?: PgError;
}

/**
 * Writes `requests` (whole messages) to a logged-in backend connection and reads until it has
 * answered `readies` ReadyForQuery. ParameterStatus updates `connection.parameters`; messages
 * read past the last ReadyForQuery are kept in `connection.leftover` for the relay. Throws
 * {@link BackendLost} when the connection closes, fails, says FATAL, or `timeoutMs` passes (the
 * socket is then destroyed).
 */
export async function exchange(
  connection: BackendConnection,
  requests: readonly Buffer[],
  readies: number,
  timeoutMs: number,
): Promise<ExchangeResult> {
  const { socket } = connection;
  if (socket.destroyed || socket.writableEnded || socket.readableEnded) throw new BackendLost('closed');
  const reader = new FrameReader(socket, connection.framer, 'backend');
  const timer = setTimeout(() => socket.destroy(new Error('timed out')), timeoutMs);
  let status: TransactionStatus = 'I';
  let error: PgError | undefined;
  try {
    socket.write(requests.length === 1 ? requests[0]! : Buffer.concat(requests));
    let left = readies;
    while (left > 0) {
      let frame;
      try {
        frame = await reader.read();
      } catch (err) {
        throw new BackendLost((err as Error).message);
      }
      const m = backendMessage(frame.code, frame.raw);
      switch (m.type) {
        case 'ParameterStatus': {
          const { name, value } = m.body();
          connection.parameters.set(name, value);
          break;
        }
        case 'ErrorResponse': {
          const fields = m.body();
          const severity = fields.severityV ?? fields.severity;
          if (severity === 'FATAL' || severity === 'PANIC') throw new BackendLost(`${fields.code ?? ''} ${fields.message ?? ''}`.trim());
          error ??= PgError.fromFields(fields);
          break;
        }
        case 'ReadyForQuery':
          status = m.body().status;
          left--;
          break;
        default:
          // Row descriptions, rows, command tags, notices: the caller needs none of them.
          break;
      }
    }
  } catch (err) {
    socket.destroy();
    throw err instanceof BackendLost ? err : new BackendLost((err as Error).message);
  } finally {
    clearTimeout(timer);
    connection.leftover.push(...reader.release());
  }
  return { status, error };
}

/** A Query message for `sql`. */
export function query(sql: string): Buffer {
  return fe.query(sql).raw;
}

/** A Sync: answered by ReadyForQuery alone, the cheapest way to hear from an idle backend. */
export function sync(): Buffer {
  return fe.sync().raw;
}

/** `SELECT set_config(…)` for each parameter: applies startup parameters to an open session. */
export function setConfigQuery(params: ReadonlyMap<string, string>): string {
  const calls = [...params].map(([name, value]) => `pg_catalog.set_config(${literal(name)}, ${literal(value)}, false)`);
  return `SELECT ${calls.join(', ')}`;
}

/** An escape string literal: correct whatever standard_conforming_strings says. */
function literal(text: string): string {
  return `E'${text.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

