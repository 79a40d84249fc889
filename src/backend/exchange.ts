import { BackendSpecs, backendMessage, fe, frameView, PgError, type FrameSink, type TransactionStatus } from '../protocol/index.js';
import { ConnectionClosed, readSocket, type Frame, type SocketReading } from '../transport/socket-io.js';
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
  /** How many of the requests were answered (their ReadyForQuery read) before that error. */
  erredAt?: number;
}

/**
 * Writes `requests` (whole messages) to a logged-in backend connection and reads until it has
 * answered `readies` ReadyForQuery. ParameterStatus updates `connection.parameters`; messages
 * read past the last ReadyForQuery are kept in `connection.leftover` for the relay. Throws
 * {@link BackendLost} when the connection closes, fails, says FATAL, or `timeoutMs` passes (the
 * socket is then destroyed). The answer's messages are taken as each chunk is framed, not one
 * promise per message: a login's `set_config` and reset answer with five or so in one chunk.
 *
 * The socket is left paused, unless `keepReading`: for a caller that gives the socket to another
 * reader as it resumes (no I/O comes between a promise's settling and its continuation). Node
 * stops reading a paused socket at once (`readStop`), and libuv registers it again when reading
 * starts (an `epoll_ctl` ADD that fails with EEXIST, then a MOD): two system calls a hand-over.
 */
export function exchange(connection: BackendConnection, requests: readonly Buffer[], readies: number, timeoutMs: number, keepReading = false): Promise<ExchangeResult> {
  const { socket } = connection;
  if (socket.destroyed || socket.writableEnded || socket.readableEnded) return Promise.reject(new BackendLost('closed'));
  return new Promise((resolve, reject) => new Exchange(connection, readies, keepReading, resolve, reject).start(requests, timeoutMs));
}

const READY_FOR_QUERY = BackendSpecs.ReadyForQuery.code;
const PARAMETER_STATUS = BackendSpecs.ParameterStatus.code;
const ERROR_RESPONSE = BackendSpecs.ErrorResponse.code;

/**
 * One exchange: what the backend answered so far (the messages up to the last awaited
 * ReadyForQuery, and those after it) and how it ends. One object, its own socket reader, rather
 * than a closure per event: the pool runs two exchanges a login (the parameters, the reset).
 */
class Exchange implements SocketReading {
  status: TransactionStatus = 'I';
  /** The first ErrorResponse (not FATAL), and how many ReadyForQuery came before it. */
  private failure: PgError | undefined;
  private erredAt: number | undefined;
  /** How many ReadyForQuery are still awaited. */
  private left: number;
  /** Frames that came after the last awaited ReadyForQuery (the relay's). */
  private after: Frame[] | undefined;
  private settled = false;
  private timer: NodeJS.Timeout | undefined;
  private stop: (() => void) | undefined;

  constructor(
    private readonly connection: BackendConnection,
    private readonly readies: number,
    private readonly keepReading: boolean,
    private readonly resolve: (result: ExchangeResult) => void,
    private readonly reject: (lost: BackendLost) => void,
  ) {
    this.left = readies;
  }

  start(requests: readonly Buffer[], timeoutMs: number): void {
    this.timer = setTimeout(timedOut, timeoutMs, this);
    this.stop = readSocket(this.connection.socket, this);
    if (!this.settled) this.connection.socket.write(requests.length === 1 ? requests[0]! : Buffer.concat(requests));
  }

  readonly chunk = (chunk: Buffer): void => {
    try {
      this.connection.framer.push(chunk, this.sink);
    } catch (err) {
      return this.settle(err instanceof BackendLost ? err : new BackendLost((err as Error).message));
    }
    if (this.left === 0) this.settle();
  };

  end(): void {
    this.settle(new BackendLost(new ConnectionClosed('backend').message));
  }

  error(err: unknown): void {
    this.settle(new BackendLost((err as Error).message));
  }

  settle(lost?: BackendLost): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    this.stop?.();
    const { connection } = this;
    if (!this.keepReading || lost) connection.socket.pause();
    if (this.after) connection.leftover.push(...this.after);
    if (lost) {
      connection.socket.destroy();
      this.reject(lost);
    } else this.resolve({ status: this.status, error: this.failure, erredAt: this.erredAt });
  }

  private readonly sink: FrameSink = (code, source, offset, length) => {
    if (this.left === 0) {
      (this.after ??= []).push({ code, raw: frameView(source, offset, length) });
      return;
    }
    if (code === READY_FOR_QUERY) {
      // The status byte read in place (a well-formed one); anything else is decoded, and refused, as a message.
      const status = length === 6 ? String.fromCharCode(source[offset + 5]!) : '';
      this.status = status === 'I' || status === 'T' || status === 'E' ? status : decodedStatus(source, offset, length);
      this.left--;
      return;
    }
    // Row descriptions, rows, command tags, notices: the caller needs none of them, not even as messages.
    if (code !== PARAMETER_STATUS && code !== ERROR_RESPONSE) return;
    const m = backendMessage(code, source, offset, length);
    if (m.type === 'ParameterStatus') {
      const { name, value } = m.body();
      this.connection.parameters.set(name, value);
    } else if (m.type === 'ErrorResponse') {
      const fields = m.body();
      const severity = fields.severityV ?? fields.severity;
      if (severity === 'FATAL' || severity === 'PANIC') throw new BackendLost(`${fields.code ?? ''} ${fields.message ?? ''}`.trim());
      if (!this.failure) {
        this.failure = PgError.fromFields(fields);
        this.erredAt = this.readies - this.left;
      }
    }
  };
}

function timedOut(exchange: Exchange): void {
  exchange.settle(new BackendLost('timed out'));
}

/** A ReadyForQuery's status, decoded as a message: one the protocol does not allow is refused there. */
function decodedStatus(source: Buffer, offset: number, length: number): TransactionStatus {
  const m = backendMessage(READY_FOR_QUERY, source, offset, length);
  return m.type === 'ReadyForQuery' ? m.body().status : 'I';
}

/** A Query message for `sql`. */
export function query(sql: string): Buffer {
  return fe.query(sql).raw;
}

/** A Sync: answered by ReadyForQuery alone, the cheapest way to hear from an idle backend. */
export function sync(): Buffer {
  return fe.sync().raw;
}

/**
 * The `set_config` query for the parameters of `wanted` whose value differs from what the backend
 * last reported (names case-insensitive), or undefined when none does.
 */
export function parametersRequest(wanted: ReadonlyMap<string, string>, reported: ReadonlyMap<string, string>): Buffer | undefined {
  let changes: Map<string, string> | undefined;
  for (const name of wanted.keys()) {
    const value = wanted.get(name)!;
    if ((reported.get(name) ?? reportedIgnoringCase(reported, name)) !== value) (changes ??= new Map()).set(name, value);
  }
  return changes && query(setConfigQuery(changes));
}

/** A parameter the backend reported under another spelling of `name` (it reports `DateStyle`, a client may send `datestyle`). */
function reportedIgnoringCase(reported: ReadonlyMap<string, string>, name: string): string | undefined {
  const lower = name.toLowerCase();
  for (const [k, v] of reported) if (k.toLowerCase() === lower) return v;
  return undefined;
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

