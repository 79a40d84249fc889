/**
 * Builds one protocol message: reserves the 5-byte header (or 4 for untyped startup packets) and
 * fills the length in `finish()`, so callers never compute lengths by hand.
 */
export class MessageWriter {
  private buf: Buffer;
  private pos: number;
  private readonly headerSize: number;

  /** `code` is the message type byte, or null for an untyped startup-phase packet. */
  constructor(private readonly code: number | null, initialSize = 64) {
    this.headerSize = code === null ? 4 : 5;
    this.buf = Buffer.allocUnsafe(Math.max(initialSize, this.headerSize + 16));
    this.pos = this.headerSize;
  }

  private ensure(extra: number): void {
    if (this.pos + extra <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + extra));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  int8(v: number): this {
    this.ensure(1);
    this.buf.writeUInt8(v & 0xff, this.pos);
    this.pos += 1;
    return this;
  }

  int16(v: number): this {
    this.ensure(2);
    this.buf.writeInt16BE(v, this.pos);
    this.pos += 2;
    return this;
  }

  int32(v: number): this {
    this.ensure(4);
    this.buf.writeInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }

  cstring(s: string): this {
    const len = Buffer.byteLength(s, 'utf8');
    this.ensure(len + 1);
    this.buf.write(s, this.pos, 'utf8');
    this.pos += len;
    this.buf[this.pos++] = 0;
    return this;
  }

  /** A string without terminator (used where the length is implied by the message end). */
  string(s: string): this {
    const len = Buffer.byteLength(s, 'utf8');
    this.ensure(len);
    this.buf.write(s, this.pos, 'utf8');
    this.pos += len;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  finish(): Buffer {
    const out = this.buf.subarray(0, this.pos);
    if (this.code === null) {
      out.writeInt32BE(this.pos, 0);
    } else {
      out[0] = this.code;
      out.writeInt32BE(this.pos - 1, 1);
    }
    return out;
  }
}

/** Reads fields of one message payload; every read is bounds-checked by the caller's `need`. */
export class PayloadReader {
  private pos = 0;

  constructor(private readonly buf: Buffer) {}

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  get offset(): number {
    return this.pos;
  }

  private need(n: number, what: string): void {
    if (this.pos + n > this.buf.length) throw new MalformedMessage(`truncated ${what}`);
  }

  int8(): number {
    this.need(1, 'byte');
    return this.buf[this.pos++]!;
  }

  int16(): number {
    this.need(2, 'int16');
    const v = this.buf.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  uint16(): number {
    this.need(2, 'int16');
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  int32(): number {
    this.need(4, 'int32');
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  cstring(): string {
    const end = this.buf.indexOf(0, this.pos);
    if (end < 0) throw new MalformedMessage('unterminated string');
    const s = this.buf.toString('utf8', this.pos, end);
    this.pos = end + 1;
    return s;
  }

  /** A view (no copy) of the next n bytes. */
  bytes(n: number): Buffer {
    if (n < 0) throw new MalformedMessage('negative length');
    this.need(n, 'bytes');
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  rest(): Buffer {
    const b = this.buf.subarray(this.pos);
    this.pos = this.buf.length;
    return b;
  }

  /** A string running to the end of the payload (no terminator). */
  restString(): string {
    return this.rest().toString('utf8');
  }

  end(what: string): void {
    if (this.pos !== this.buf.length) throw new MalformedMessage(`trailing bytes in ${what}`);
  }
}

export class MalformedMessage extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MalformedMessage';
  }
}
