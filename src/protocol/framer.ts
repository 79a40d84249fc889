// The global `Buffer` is an accessor on globalThis: a getter call on every use in a hot loop.
import { Buffer } from 'node:buffer';
import { invalidMessageLength, messageTooLong, startupPacketRefused } from './errors.js';

/** Length limits (value of the length field, which counts itself) per phase, from the issue. */
export const Limits = {
  startupPacket: 10_000,
  authMessage: 64 * 1024,
  message: 1024 * 1024 * 1024,
  /** Default of `--maxMessageSize`: most a relayed message may declare when it is held whole. */
  assembledMessage: 64 * 1024 * 1024,
} as const;

/** Code given to untyped startup-phase packets, which carry no type byte. */
export const UNTYPED = -1;

/**
 * Receives one frame, header included: `source[offset, offset + length)`. A frame that lies within
 * the chunk being pushed is given as that chunk and a range of it, so that no view is made unless
 * someone needs one and untouched neighbours can be written back as one range; a frame assembled
 * across chunks is a buffer of its own (offset 0, its whole length).
 */
export type FrameSink = (code: number, source: Buffer, offset: number, length: number) => void;

/**
 * Receives a message that is streamed instead of assembled, in pieces as they arrive: the first
 * piece starts with the header, `last` marks the piece that ends the message. Each piece is a range
 * of the chunk being pushed (or, for a header split across chunks, a buffer of its own).
 */
export type PieceSink = (code: number, source: Buffer, offset: number, length: number, last: boolean) => void;

/** How the relay phase bounds what a Framer assembles (see `Framer.bound`). */
export interface FrameBounds {
  /** Most bytes (the length field's value) a message may declare when it is assembled whole. */
  maxAssembled: number;
  /** Message types passed on in pieces rather than assembled, and who takes the pieces. */
  stream?: { codes: readonly number[]; sink: PieceSink };
  /** The largest length field accepted per type byte (the protocol table's, e.g. `frontendMaxLength`). */
  typeMaxLength?: Uint32Array;
}

/** Streamable messages longer than this (length field) are streamed when they span chunks. */
export const STREAM_ABOVE = 64 * 1024;

/** A frame as a buffer of its own (a view, no copy). */
export function frameView(source: Buffer, offset: number, length: number): Buffer {
  return offset === 0 && length === source.length ? source : source.subarray(offset, offset + length);
}

/**
 * Splits a byte stream into whole protocol messages. A frame is handed out as a range of the
 * incoming chunk (no copy) whenever it lies within one chunk; only a frame that spans chunks is
 * assembled into its own buffer, allocated once at its final size.
 *
 * A frame always includes the header (type byte and length), so an untouched frame can be
 * forwarded as is.
 */
export class Framer {
  /** Largest accepted value of a length field; callers tighten it during startup and auth. */
  maxLength: number;
  /** When true the next frame is an untyped startup packet (length only, no type byte). */
  untyped: boolean;
  /**
   * Limit once a StartupMessage has been framed: from there on the stream carries typed messages
   * (a client may pipeline its PasswordMessage in the same write, as PostgreSQL allows).
   */
  private readonly typedMaxLength: number | undefined;

  private head: Buffer | null = null; // fewer bytes than a header
  private partial: Buffer | null = null; // a frame whose header is known, being filled
  private filled = 0;
  private partialCode = 0;
  // Relay-phase bounds (see `bound`); until then `maxLength` is the only limit.
  private relayBounds = false;
  private maxAssembled = Limits.message;
  private streamed: Uint8Array | null = null;
  private pieces: PieceSink | null = null;
  private streamLeft = 0; // bytes of a streamed message still to come
  private streamCode = 0;
  private typeMax: Uint32Array | null = null;

  constructor(opts: { maxLength?: number; untyped?: boolean; typedMaxLength?: number } = {}) {
    this.maxLength = opts.maxLength ?? Limits.message;
    this.untyped = opts.untyped ?? false;
    this.typedMaxLength = opts.typedMaxLength;
  }

  /**
   * Called for each untyped frame before it is handed out: a StartupMessage (its code is a
   * protocol version, not a 1234.x request code) ends the untyped phase, so bytes after it in the
   * same chunk are framed as typed messages. Requests (SSL, GSSENC, cancel) keep it untyped.
   */
  private afterUntyped(frame: Buffer, off: number): void {
    if (this.typedMaxLength === undefined) return;
    if (buf16At(frame, off + 4) === REQUEST_CODE_MAJOR) return;
    this.untyped = false;
    this.maxLength = this.typedMaxLength;
  }

  /**
   * Bounds the relay phase: messages of the `stream` types longer than `STREAM_ABOVE` that span
   * chunks go to its sink in pieces (never held whole; the protocol's 1 GiB is their only limit),
   * every other message is assembled only up to `maxAssembled` (over it: FATAL 54000).
   */
  bound({ maxAssembled, stream, typeMaxLength }: FrameBounds): void {
    this.relayBounds = true;
    this.typeMax = typeMaxLength ?? null;
    this.maxAssembled = Math.min(maxAssembled, Limits.message);
    this.streamed = null;
    this.pieces = null;
    if (stream) {
      this.streamed = new Uint8Array(256);
      for (const c of stream.codes) this.streamed[c] = 1;
      this.pieces = stream.sink;
    }
    this.maxLength = stream ? Math.min(STREAM_ABOVE, this.maxAssembled) : this.maxAssembled;
  }

  /** True while a streamed message has begun and not ended (its pieces went out). */
  get midStream(): boolean {
    return this.streamLeft > 0;
  }

  /** Bytes held back waiting for the rest of a frame. */
  get buffered(): number {
    return (this.head?.length ?? 0) + (this.partial ? this.filled : 0);
  }

  /**
   * Feeds one chunk; calls `sink` once per complete frame, in order. Throws a FATAL 08P01
   * PgError on an impossible or oversize length; the stream is unusable afterwards.
   */
  push(chunk: Buffer, sink: FrameSink): void {
    let off = 0;
    if (this.streamLeft > 0) {
      off = this.continueStream(chunk, 0);
      if (this.streamLeft > 0) return;
    }
    if (this.partial) {
      off = this.fillPartial(chunk, 0, sink);
      if (this.partial) return;
    }
    if (this.head) {
      const headerSize = this.untyped ? 4 : 5;
      const need = headerSize - this.head.length;
      if (chunk.length - off < need) {
        this.head = Buffer.concat([this.head, chunk.subarray(off)]);
        return;
      }
      const header = Buffer.concat([this.head, chunk.subarray(off, off + need)]);
      this.head = null;
      const total = this.frameSize(header, 0);
      if (this.streams(header[0]!, total)) {
        this.streamCode = header[0]!;
        this.streamLeft = total - header.length;
        this.pieces!(this.streamCode, header, 0, header.length, false);
        off = this.continueStream(chunk, off + need);
        if (this.streamLeft > 0) return;
        this.scan(chunk, off, sink);
        return;
      }
      this.startPartial(header, total);
      off = this.fillPartial(chunk, off + need, sink);
      if (this.partial) return;
    }
    this.scan(chunk, off, sink);
  }

  private scan(chunk: Buffer, start: number, sink: FrameSink): void {
    let off = start;
    const end = chunk.length;
    for (;;) {
      const headerSize = this.untyped ? 4 : 5;
      if (end - off < headerSize) break;
      const total = this.frameSize(chunk, off);
      if (end - off < total) {
        if (this.streams(chunk[off]!, total)) {
          this.streamCode = chunk[off]!;
          this.streamLeft = total - (end - off);
          this.pieces!(this.streamCode, chunk, off, end - off, false);
          return;
        }
        this.startPartial(chunk.subarray(off, off + headerSize), total);
        this.fillPartial(chunk, off + headerSize, sink);
        return;
      }
      const code = this.untyped ? UNTYPED : chunk[off]!;
      const at = off;
      off += total;
      if (code === UNTYPED) this.afterUntyped(chunk, at);
      sink(code, chunk, at, total);
    }
    if (off < end) this.head = Buffer.from(chunk.subarray(off));
  }

  /** Size of the whole frame (header included) starting at `off`, validated against limits. */
  private frameSize(buf: Buffer, off: number): number {
    if (this.untyped) {
      const len = int32At(buf, off);
      if (len < 8 || len > this.maxLength) {
        // PostgreSQL: COMMERROR "invalid length of startup packet", nothing sent to the client.
        throw startupPacketRefused(`invalid length of startup packet ${len}`);
      }
      return len;
    }
    const len = int32At(buf, off + 1);
    if (this.typeMax !== null && len > this.typeMax[buf[off]!]!) throw invalidMessageLength(String.fromCharCode(buf[off]!), len);
    if (len < 4 || len > this.maxLength) this.oversize(buf[off]!, len);
    return len + 1;
  }

  /** Throws unless a length over `maxLength` is one the relay phase streams or may assemble. */
  private oversize(code: number, len: number): void {
    const type = String.fromCharCode(code);
    if (len < 4 || len > Limits.message) throw invalidMessageLength(type, len);
    if (!this.relayBounds) throw invalidMessageLength(type, len);
    if (this.streamed?.[code] === 1) return;
    if (len > this.maxAssembled) throw messageTooLong(type, len, this.maxAssembled);
  }

  /** Whether a frame of `total` bytes that spans chunks is streamed rather than assembled. */
  private streams(code: number, total: number): boolean {
    return total - 1 > STREAM_ABOVE && this.streamed?.[code] === 1 && !this.untyped;
  }

  /** Passes on the next piece of a streamed message from `chunk`; returns the new offset. */
  private continueStream(chunk: Buffer, off: number): number {
    const take = Math.min(this.streamLeft, chunk.length - off);
    this.streamLeft -= take;
    if (take > 0 || this.streamLeft === 0) this.pieces!(this.streamCode, chunk, off, take, this.streamLeft === 0);
    return off + take;
  }

  private startPartial(header: Buffer, total: number): void {
    this.partialCode = this.untyped ? UNTYPED : header[0]!;
    this.partial = Buffer.allocUnsafe(total);
    header.copy(this.partial, 0);
    this.filled = header.length;
  }

  /** Copies from `chunk` into the partial frame; emits it when full and returns the new offset. */
  private fillPartial(chunk: Buffer, off: number, sink: FrameSink): number {
    const partial = this.partial!;
    const take = Math.min(partial.length - this.filled, chunk.length - off);
    chunk.copy(partial, this.filled, off, off + take);
    this.filled += take;
    off += take;
    if (this.filled === partial.length) {
      this.partial = null;
      this.filled = 0;
      if (this.partialCode === UNTYPED) this.afterUntyped(partial, 0);
      sink(this.partialCode, partial, 0, partial.length);
      if (off < chunk.length) {
        this.scan(chunk, off, sink);
        return chunk.length;
      }
    }
    return off;
  }

  /** Hands over bytes not yet framed (used when a stream changes hands, e.g. before TLS). */
  takeBuffered(): Buffer {
    const parts: Buffer[] = [];
    if (this.partial) parts.push(this.partial.subarray(0, this.filled));
    if (this.head) parts.push(this.head);
    this.partial = null;
    this.head = null;
    this.filled = 0;
    return Buffer.concat(parts);
  }
}

/** Upper 16 bits of the SSL, GSSENC and cancel request codes (1234.5679 and neighbours). */
const REQUEST_CODE_MAJOR = 1234;

function buf16At(buf: Buffer, off: number): number {
  return (buf[off]! << 8) | buf[off + 1]!;
}

/** A big-endian int32 at `off` (which the caller has checked is in range), without Buffer#readInt32BE's argument checks. */
function int32At(buf: Buffer, off: number): number {
  return (buf[off]! << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!;
}
