// The native relay addon (native/relay.c): a session's bytes moved inside libuv's loop, with no
// JavaScript per read or write, for sessions whose pipeline looks at no message.
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TransactionStatus } from '../protocol/index.js';
import { chunkRouteOf } from './own-read.js';

interface Addon {
  start(
    clientFd: number,
    backendFd: number,
    clientMaxLength: number,
    backendMaxLength: number,
    callback: (event: number, data?: Buffer) => void,
    timeStatements: boolean,
    holdTerminate: boolean,
  ): object;
  stop(handle: object): boolean;
  abort(handle: object): boolean;
  status(handle: object): number[];
  bytes(handle: object, out: Float64Array): void;
  timings(handle: object): Float64Array;
  inFlight(handle: object): Float64Array;
  live(): number;
}

const EV_END = 1;
const EV_PARAMETER_STATUS = 2;
const EV_TIMINGS_FULL = 3;

/** Why the native relay handed the session back; the numbers are relay.c's. */
export type NativeRelayEndReason =
  | 'stopped'
  | 'client-eof'
  | 'backend-eof'
  | 'client-error'
  | 'backend-error'
  | 'client-violation'
  | 'backend-violation'
  | 'client-terminate';

const REASONS: Record<number, NativeRelayEndReason> = {
  1: 'stopped',
  2: 'client-eof',
  3: 'backend-eof',
  4: 'client-error',
  5: 'backend-error',
  6: 'client-violation',
  7: 'backend-violation',
  8: 'client-terminate',
};

export interface NativeRelayStatus {
  transactionStatus: TransactionStatus;
  unanswered: number;
  /** The client sent Terminate. */
  terminated: boolean;
  /** The last message from the backend was an ErrorResponse with severity FATAL or PANIC. */
  backendSaidFatal: boolean;
  bytesToClient: number;
  bytesToBackend: number;
  /** What the client was sent (or the backend) stops inside a message. */
  clientMidMessage: boolean;
  backendMidMessage: boolean;
  /** An extended-protocol message went to the backend after the last Query, Sync or FunctionCall. */
  unsynced: boolean;
  /** A held Terminate had been partly sent before it was recognised: the backend saw some of it. */
  terminateSplit: boolean;
}

export interface NativeRelayEnd extends NativeRelayStatus {
  reason: NativeRelayEndReason;
  /** With statement timing: how long ago (s) each statement still waiting for its result was sent, oldest first. */
  inFlight: number[];
  /** errno of the I/O failure, for the *-error reasons. */
  errno: number;
  /** The offending header, for the *-violation reasons. */
  violation?: { code: string; length: number };
}

export interface NativeRelayEvents {
  /** The body of a ParameterStatus the client was sent. */
  parameterStatus(body: Buffer): void;
  /** The relay stopped (asked to, at a message boundary both ways) or a side ended or failed. */
  end(end: NativeRelayEnd): void;
  /**
   * When given, statements are timed as `statement-telemetry.ts` times them (from a Query or
   * Execute sent to its CommandComplete, EmptyQueryResponse, PortalSuspended or ErrorResponse)
   * and handed here in batches: by `drainTimings`, when many wait, and at the end.
   */
  statement?(seconds: number, ok: boolean): void;
  /**
   * Hold the client's Terminate back from the backend: the relay ends with `client-terminate`
   * once what preceded it is written, so the backend connection can be kept for another session.
   */
  holdTerminate?: boolean;
}

let loaded: Addon | null | undefined;
let loadError: string | undefined;

function addon(): Addon | null {
  if (loaded !== undefined) return loaded;
  try {
    // dist/src/pipeline → the repository root.
    const require = createRequire(import.meta.url);
    loaded = require('../../../native/build/Release/pgward_relay.node') as Addon;
  } catch (err) {
    loaded = null;
    loadError = err instanceof Error ? err.message.split('\n')[0] : String(err);
  }
  return loaded;
}

/** Whether the addon is built and loads here; when not, why (for the operator's log). */
export function nativeRelayAvailability(): { available: true } | { available: false; reason: string } {
  return addon() ? { available: true } : { available: false, reason: loadError ?? 'not built' };
}

/** The descriptor of a plain TCP socket that reads through `own-read.ts` (so it is not read behind our back), if it is one. */
function relayableFd(socket: Duplex): number | undefined {
  if (chunkRouteOf(socket) === undefined) return undefined;
  const s = socket as Socket & { _handle?: { fd?: unknown } | null; encrypted?: boolean };
  if (s.encrypted || s.destroyed || s.writableLength > 0 || s.writableCorked > 0 || s.readableLength > 0) return undefined;
  const fd = s._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

export class NativeRelay {
  /** How many native relays are allocated in this process (for leak checks). */
  static live(): number {
    return addon()?.live() ?? 0;
  }

  private readonly bytesView = new Float64Array(2);
  private final: NativeRelayStatus | undefined;

  private constructor(
    private readonly lib: Addon,
    private readonly handle: object,
    private readonly statement: ((seconds: number, ok: boolean) => void) | undefined,
  ) {}

  /** Hands the statements finished since the last call to `events.statement`. */
  drainTimings(): void {
    const statement = this.statement;
    if (statement === undefined || this.final) return;
    for (const v of this.lib.timings(this.handle)) {
      if (v >= 0) statement(v, true);
      else statement(-1 - v, false);
    }
  }

  /**
   * Starts relaying between two idle sockets, or returns undefined when this pair cannot be
   * relayed natively (no addon, TLS, data already buffered in Node on either side). Both sockets
   * must stay paused, and unwritten to, until `events.end`.
   */
  static start(
    client: Duplex,
    backend: Duplex,
    limits: { client: number; backend: number },
    events: NativeRelayEvents,
  ): NativeRelay | undefined {
    const lib = addon();
    if (!lib) return undefined;
    const clientFd = relayableFd(client);
    const backendFd = relayableFd(backend);
    if (clientFd === undefined || backendFd === undefined) return undefined;
    client.pause();
    backend.pause();
    let relay: NativeRelay | undefined = undefined;
    const callback = (event: number, data?: Buffer) => {
      if (event === EV_PARAMETER_STATUS && data) events.parameterStatus(data);
      else if (event === EV_TIMINGS_FULL) relay!.drainTimings();
      else if (event === EV_END) events.end(relay!.ended());
    };
    const handle = lib.start(clientFd, backendFd, limits.client, limits.backend, callback, events.statement !== undefined, events.holdTerminate === true);
    relay = new NativeRelay(lib, handle, events.statement);
    return relay;
  }

  /**
   * Asks the relay to stop at the next message boundary in both directions. Returns how it ended
   * when it stopped at once (no `end` event follows); otherwise `end` reports it, or whatever
   * ended it first.
   */
  stop(): NativeRelayEnd | undefined {
    return this.endedIf(() => this.lib.stop(this.handle));
  }

  /**
   * Stops at once, wherever each direction is (`clientMidMessage`/`backendMidMessage` say whether
   * a stream was left inside a message): for a close that can wait no longer. No `end` event follows.
   */
  abort(): NativeRelayEnd | undefined {
    return this.endedIf(() => this.lib.abort(this.handle));
  }

  /** Runs `halt` on a relay that has not ended; when it halted the relay, how it ended. */
  private endedIf(halt: () => boolean): NativeRelayEnd | undefined {
    return this.final === undefined && halt() ? this.ended() : undefined;
  }

  /** What the relay knows now (or knew when it ended). */
  status(): NativeRelayStatus {
    return this.final ?? toStatus(this.lib.status(this.handle));
  }

  get bytesToClient(): number {
    if (this.final) return this.final.bytesToClient;
    this.lib.bytes(this.handle, this.bytesView);
    return this.bytesView[0]!;
  }

  get bytesToBackend(): number {
    if (this.final) return this.final.bytesToBackend;
    this.lib.bytes(this.handle, this.bytesView);
    return this.bytesView[1]!;
  }

  private ended(): NativeRelayEnd {
    this.drainTimings();
    const raw = this.lib.status(this.handle);
    const end: NativeRelayEnd = {
      ...toStatus(raw),
      reason: REASONS[raw[0]!] ?? 'stopped',
      errno: raw[1]!,
      inFlight: this.statement ? Array.from(this.lib.inFlight(this.handle)) : [],
    };
    if (end.reason === 'client-violation' || end.reason === 'backend-violation') {
      end.violation = { code: String.fromCharCode(raw[10]!), length: raw[11]! };
    }
    this.final = end;
    return end;
  }
}

function toStatus(raw: number[]): NativeRelayStatus {
  return {
    transactionStatus: String.fromCharCode(raw[2]!) as TransactionStatus,
    unanswered: raw[3]!,
    terminated: raw[4] === 1,
    backendSaidFatal: raw[5] === 1,
    bytesToClient: raw[6]!,
    bytesToBackend: raw[7]!,
    clientMidMessage: raw[8] === 1,
    backendMidMessage: raw[9] === 1,
    unsynced: raw[12] === 1,
    terminateSplit: raw[13] === 1,
  };
}
