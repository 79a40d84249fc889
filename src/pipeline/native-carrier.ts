// The native carrier (native/*.c): a session's bytes moved inside libuv's loop. It frames every
// message in C and forwards those the pipeline did not ask for, with no JavaScript per read; the
// ones asked for come here in one batch per read, the batches of every session read in one turn
// of the loop in one call (onBatches), and what the pipeline writes goes back to C.
// The global `Buffer` is an accessor on globalThis: a getter call on every use.
import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  backendMessage,
  frontendMessage,
  invalidMessageLength,
  messageTooLong,
  type Message,
  type TransactionStatus,
} from '../protocol/index.js';
import {
  closeSockets,
  currentBatchHooks,
  type Carrier,
  type CarrierEndpoint,
  type CarrierFinals,
  type CarrierOptions,
  type CarrierStatus,
  type ReleasedBackend,
} from './carrier.js';
import { NativeTlsSocket } from '../transport/native-tls-socket.js';
import { NativeWriter } from './native-writer.js';
import { chunkRouteOf, parkReading } from '../transport/own-read.js';
import { nativeAddon } from '../transport/native-addon.js';
import { B_OBSERVED_ONLY, beginHandOver, cursor, endHandOver, observedLeft } from './native-hand-over.js';
import { readTimeOf, setReadTime } from './read-time.js';
import { reportedEnd, reportedStatus, socketErrorOf, type Ended } from './native-report.js';
import { COUNTED } from './wants.js';

/** The addon's functions (native/binding.c). */
interface Addon {
  tapeEntries: number;
  setup(batch: typeof onBatches, event: typeof onEvent, tape: Uint32Array): void;
  /** client, backend: a plain socket's descriptor, or a native TLS endpoint's handle (lent to C until the carrier halts). */
  start(self: NativeCarrier, client: number | object, backend: number | object, wants: Uint8Array, clientMax: number, backendMax: number, timing: boolean, reuse: boolean): object;
  write(handle: object, direction: number, bytes: Uint8Array, offset: number, length: number, continues: boolean): number;
  feed(handle: object, direction: number, bytes: Uint8Array): void;
  stop(handle: object): boolean;
  abort(handle: object): boolean;
  pause(handle: object, side: number, paused: boolean): void;
  watchIdle(handle: object): void;
  report(handle: object, out: Float64Array): void;
  readonly reportNames: { readonly slots: readonly string[]; readonly reasons: readonly string[] };
  ended(handle: object): Ended;
  timings(handle: object): Float64Array;
  live(): number;
}

// Mirrors of native/carrier.h.
const TO_BACKEND = 0;
const TO_CLIENT = 1;
const T_FORWARD = 1;
const T_DELIVER = 2;
const T_OBSERVE = 5; // and T_OBSERVE_ASSEMBLED = 6
const EV_END = 1;
const EV_IDLE = 2;
const EV_TIMINGS_FULL = 3;
const W_IDLE = 1;
const W_ENDED = 2;

const NOTHING = (): void => {};

let loaded: Addon | null | undefined;
let loadError: string | undefined;
let tape: Uint32Array;

function addon(): Addon | null {
  if (loaded !== undefined) return loaded;
  const addon = nativeAddon();
  if ('error' in addon) {
    loaded = null;
    loadError = addon.error;
    return loaded;
  }
  const lib = addon.lib as unknown as Addon;
  tape = new Uint32Array(3 * lib.tapeEntries);
  lib.setup(onBatches, onEvent, tape);
  loaded = lib;
  return loaded;
}

/** Whether the addon is built and loads here; when not, why (for the operator's log). */
export function nativeCarrierAvailability(): { available: true } | { available: false; reason: string } {
  return addon() ? { available: true } : { available: false, reason: loadError ?? 'not built' };
}

/** How many native carriers are allocated in this process (for leak checks). */
export function liveNativeCarriers(): number {
  return addon()?.live() ?? 0;
}

// The shared read region as a Buffer, made again only when C starts a new region.
let regionSeen: ArrayBuffer | undefined;
let regionBuffer: Buffer = Buffer.alloc(0);

/**
 * The batches of one turn of the loop, in the order read: on the tape, each a header entry
 * (direction, entry count) and its entries; in `values` (arguments after the count), each its
 * carrier (undefined when it has ended) and its assembled message. What the chain writes is held until every batch has run and
 * the batch hooks' `end` (the log's held lines) is done, then leaves carrier by carrier.
 */
function onBatches(region: ArrayBuffer, count: number, ...values: unknown[]): void {
  if (region !== regionSeen) {
    regionSeen = region;
    regionBuffer = Buffer.from(region);
  }
  // Local: a carrier started in the middle (fed at once, see feed_batch) may move regionBuffer on.
  const buffer = regionBuffer;
  const hooks = currentBatchHooks();
  const opened: NativeCarrier[] = [];
  const h = beginHandOver(count, values, buffer);
  hooks.begin();
  try {
    for (let b = 0, at = 0; b < count; b++) {
      const head = tape[3 * at]!;
      const entries = tape[3 * at + 1]!;
      const carrier = values[2 * b] as NativeCarrier | undefined;
      h.batch = b;
      h.at = at;
      if (carrier) {
        carrier.open();
        opened.push(carrier);
        setReadTime(readTimeOf(tape[3 * at + 2]!, h.now, h.nowStamp));
        carrier.batch(head & 0xff, buffer, at + 1, entries, values[2 * b + 1] as ArrayBuffer | undefined, (head & B_OBSERVED_ONLY) !== 0);
      }
      at += 1 + entries;
    }
  } finally {
    endHandOver(h);
    setReadTime(undefined);
    hooks.end();
    for (const carrier of opened) carrier.release();
  }
}

function onEvent(carrier: NativeCarrier, event: number): void {
  if (event === EV_END) carrier.onEnded();
  else if (event === EV_IDLE) carrier.opts.events.idle();
  else if (event === EV_TIMINGS_FULL) carrier.drainTimings();
}

/**
 * What C can carry for one endpoint: a plain TCP socket's descriptor (a socket that reads through
 * `own-read.ts`, so nothing reads it behind C's back), or a native TLS endpoint's handle — in
 * either case one that holds nothing unwritten.
 */
function carriable(socket: Duplex): number | object | undefined {
  if (socket instanceof NativeTlsSocket) {
    return socket.destroyed || socket.writableLength > 0 || socket.writableCorked > 0 ? undefined : socket.nativeHandle;
  }
  if (chunkRouteOf(socket) === undefined) return undefined;
  const s = socket as Socket & { _handle?: { fd?: unknown } | null; encrypted?: boolean };
  if (s.encrypted || s.destroyed || s.writableLength > 0 || s.writableCorked > 0 || s.readableLength > 0) return undefined;
  const fd = s._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/** Plaintext a TLS endpoint handed to its stream and nobody read yet, after `parts`: once C holds the endpoint, nothing more arrives there. */
function unreadPlaintext(socket: Duplex, parts: Buffer[] | undefined): Buffer[] | undefined {
  if (!(socket instanceof NativeTlsSocket)) return parts;
  for (let chunk: Buffer | null; (chunk = socket.read() as Buffer | null) !== null; ) (parts ??= []).push(chunk);
  return parts;
}

export class NativeCarrier implements Carrier {
  readonly kind = 'native';
  private handle: object | undefined;
  private readonly toClientWriter = new NativeWriter(this, TO_CLIENT);
  private readonly toBackendWriter = new NativeWriter(this, TO_BACKEND);
  private final: CarrierStatus | undefined;
  private unsent: Ended | undefined;
  private idleDue = false;
  /** Aborted while C was busy (inside a feed): C halts as the feed returns, and nothing more moves until then. */
  private aborting = false;
  private stopPulling = NOTHING;

  private constructor(
    private readonly lib: Addon,
    private readonly client: CarrierEndpoint,
    private readonly backend: CarrierEndpoint,
    private readonly clientIo: number | object,
    private readonly backendIo: number | object,
    readonly opts: CarrierOptions,
  ) {}

  /** A native carrier for these endpoints, or undefined when it cannot carry them (no addon, Node's own TLS, bytes held in Node). */
  static open(client: CarrierEndpoint, backend: CarrierEndpoint, opts: CarrierOptions): NativeCarrier | undefined {
    const lib = addon();
    if (!lib) return undefined;
    const clientIo = carriable(client.socket);
    const backendIo = carriable(backend.socket);
    if (clientIo === undefined || backendIo === undefined) return undefined;
    return new NativeCarrier(lib, client, backend, clientIo, backendIo, opts);
  }

  start(): void {
    const { client, backend, opts, lib } = this;
    client.socket.pause();
    backend.socket.pause();
    this.handle = lib.start(this, this.clientIo, this.backendIo, opts.wants.bits(), opts.maxMessageSize, opts.maxMessageSize, opts.timings !== undefined, opts.keepBackend === true);
    if (opts.timings) this.stopPulling = opts.timings.pull(() => this.drainTimings());
    this.carryReadAhead(client, TO_BACKEND);
    this.carryReadAhead(backend, TO_CLIENT);
  }

  /** What login read ahead is carried first, as if just read; no array made when there is none (nearly always). */
  private carryReadAhead(endpoint: CarrierEndpoint, direction: number): void {
    let parts = endpoint.leftover && endpoint.leftover.length > 0 ? endpoint.leftover.map((f) => f.raw) : undefined;
    if (endpoint.framer.buffered > 0) (parts ??= []).push(endpoint.framer.takeBuffered());
    parts = unreadPlaintext(endpoint.socket, parts);
    if (parts && !this.final) this.lib.feed(this.handle!, direction, Buffer.concat(parts));
    // C reads a duplicate of the descriptor: Node's socket only waits for the close (a no-op for TLS endpoints).
    parkReading(endpoint.socket);
  }

  get transactionStatus(): TransactionStatus {
    return this.status().transactionStatus;
  }

  get unanswered(): number {
    return this.status().unanswered;
  }

  watchIdle(): void {
    if (this.handle && !this.final) this.lib.watchIdle(this.handle);
  }

  toClient(m: Message): void {
    if (!this.final) this.toClientWriter.message(m);
  }

  toBackend(m: Message): void {
    if (!this.final) this.toBackendWriter.message(m);
  }

  pause(side: 'client' | 'backend'): void {
    if (this.handle) this.lib.pause(this.handle, side === 'client' ? 0 : 1, true);
  }

  resume(side: 'client' | 'backend'): void {
    if (this.handle) this.lib.pause(this.handle, side === 'client' ? 0 : 1, false);
  }

  /** Now, or as it ended; pending writes go to C first, so the status counts them. */
  status(): CarrierStatus {
    if (this.final) return this.final;
    this.toClientWriter.flush();
    this.toBackendWriter.flush();
    return this.final ?? reportedStatus(this.lib, this.handle!);
  }

  stop(): void {
    if (this.handle && !this.final && this.lib.stop(this.handle)) this.onEnded();
  }

  abort(): void {
    if (!this.handle || this.final || this.aborting) return;
    if (this.lib.abort(this.handle)) this.onEnded();
    else this.aborting = !this.final;
  }

  close({ toClient, toBackend, keepBackend }: CarrierFinals): void {
    // Lines held for this turn's batches go first: they may be of statements answered before this.
    currentBatchHooks().end();
    const status = this.final!;
    const unsent = this.unsent;
    const client = this.client.socket;
    const backend = this.backend.socket;
    if (unsent?.unsentToClient) client.write(unsent.unsentToClient);
    if (toClient && !status.clientMidMessage) client.write(toClient.raw);
    if (!keepBackend) {
      if (unsent?.unsentToBackend) backend.write(unsent.unsentToBackend);
      if (toBackend && !status.backendMidMessage) backend.write(toBackend.raw);
    }
    this.unsent = undefined;
    const owed = unsent?.unsentToClient !== undefined || (toClient !== undefined && !status.clientMidMessage);
    closeSockets(client, keepBackend ? undefined : backend, status.terminated && !owed);
  }

  takeBackend(): ReleasedBackend {
    return { socket: this.backend.socket, framer: this.backend.framer, leftover: [] };
  }

  /** Holds what the pipeline writes until `release` (see onBatches). */
  open(): void {
    this.toClientWriter.held++;
    this.toBackendWriter.held++;
  }

  /** Writes what was held, and tells of an idle point a held write reached. */
  release(): void {
    this.toClientWriter.held--;
    this.toClientWriter.flush();
    this.toBackendWriter.held--;
    this.toBackendWriter.flush();
    if (this.idleDue && this.toClientWriter.held === 0) {
      this.idleDue = false;
      this.opts.events.idle();
    }
  }

  /**
   * A batch from C: `count` entries of the tape from `first`, in the order read, for one
   * direction. `observedOnly`: its observed messages were forwarded by C already (and nothing
   * else is on the tape); otherwise this forwards them, as it does what C forwarded not.
   */
  batch(direction: number, region: Buffer, first: number, count: number, assembled: ArrayBuffer | undefined, observedOnly: boolean, ended = false): void {
    const forward = direction === TO_BACKEND ? this.toBackendWriter : this.toClientWriter;
    const events = this.opts.events;
    const wants = direction === TO_BACKEND ? this.opts.wants.frontend : this.opts.wants.backend;
    for (let i = first, last = first + count; i < last && (ended || (!this.final && !this.aborting)); i++) {
      cursor.entry = i;
      const head = tape[3 * i]!;
      const offset = tape[3 * i + 1]!;
      const length = tape[3 * i + 2]!;
      const kind = head >>> 8;
      if (kind === T_FORWARD) {
        forward.put(region, offset, length, true);
        continue;
      }
      const observed = kind >= T_OBSERVE;
      // An assembled observed message went on in pieces as it was read.
      if (kind === T_OBSERVE && !observedOnly) forward.put(region, offset, length, true);
      // Only counted (C frames it as observed): no message is made for it, and a run of them (a
      // result's rows) is counted at once.
      const code = head & 0xff;
      if (observed && wants[code] === COUNTED) {
        let n = 1;
        for (; i + 1 < last; i++, n++) {
          const next = tape[3 * (i + 1)]!;
          if ((next & 0xff) !== code || next >>> 8 < T_OBSERVE) break;
          if (next >>> 8 === T_OBSERVE && !observedOnly) forward.put(region, tape[3 * (i + 1) + 1]!, tape[3 * (i + 1) + 2]!, true);
        }
        if (direction === TO_BACKEND) events.countedFromClient(code, n);
        else events.countedFromBackend(code, n);
        continue;
      }
      const source = kind === T_DELIVER || kind === T_OBSERVE ? region : Buffer.from(assembled!);
      if (direction === TO_BACKEND) {
        const m = frontendMessage(head & 0xff, source, offset, length);
        if (observed) events.observedFromClient(m);
        else events.fromClient(m);
      } else {
        const m = backendMessage(head & 0xff, source, offset, length);
        if (observed) events.observedFromBackend(m);
        else events.fromBackend(m);
      }
    }
  }

  /** Hands C what the pipeline wrote; learns whether that made the session idle or ended the carrier. */
  write(direction: number, source: Buffer, offset: number, length: number, continues: boolean): void {
    if (this.final || this.aborting || !this.handle) return;
    const flags = this.lib.write(this.handle, direction, source, offset, length, continues);
    if (flags & W_ENDED) this.onEnded();
    else if (flags & W_IDLE) {
      if (this.toClientWriter.held > 0) this.idleDue = true;
      else this.opts.events.idle();
    }
  }

  /** Hands the statements finished since the last call to the timings. */
  drainTimings(): void {
    const timings = this.opts.timings;
    if (!timings || !this.handle) return;
    for (const v of this.lib.timings(this.handle)) {
      if (v >= 0) timings.statement(v, true);
      else timings.statement(-1 - v, false);
    }
  }

  /** C halted: take how it ended (and what it could not send) and tell the session. */
  onEnded(): void {
    if (this.final || !this.handle) return;
    this.drainTimings();
    this.stopPulling();
    // A closure of the metrics' would keep this carrier alive with a session someone retains.
    this.stopPulling = NOTHING;
    const { status, ended } = reportedEnd(this.lib, this.handle);
    this.final = status;
    // Ended inside a hand-over: what C forwarded and it observed later in it is shown first.
    observedLeft(tape, this, (direction, region, first, count, assembled) => this.batch(direction, region, first, count, assembled, true, true));
    this.unsent = ended;
    const reason = ended.reason === 'running' ? 'stopped' : ended.reason;
    const v = ended.violation;
    const error = v ? (v.kind === 'too-long' ? messageTooLong(v.code, v.length, this.opts.maxMessageSize) : invalidMessageLength(v.code, v.length)) : undefined;
    const cause = reason.endsWith('-error') ? socketErrorOf(ended.errno) : undefined;
    this.opts.events.ended({ reason, status: this.final, error, cause });
  }
}
