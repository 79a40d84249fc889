// The global `Buffer` is an accessor on globalThis: a getter call on every use in a hot loop.
import { Buffer } from 'node:buffer';
import { invalidMessageLength, startupPacketRefused } from './errors.js';

/** Length limits (value of the length field, which counts itself) per phase, from the issue. */
export const Limits = {
  startupPacket: 10_000,
  authMessage: 64 * 1024,
  message: 1024 * 1024 * 1024,
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
    if (len < 4 || len > this.maxLength) {
      throw invalidMessageLength(String.fromCharCode(buf[off]!), len);
    }
    return len + 1;
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
