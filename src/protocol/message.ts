import { MalformedMessage, PayloadReader } from './buffer-writer.js';
import { protocolViolation } from './errors.js';
import { frameView } from './framer.js';

/**
 * One protocol message as it travels through the pipeline: the raw bytes (a view of the socket
 * chunk, header included) plus a body decoded only when someone asks for it.
 */
export interface Message<T extends string = string, B = unknown> {
  /** Message name, e.g. "Query", "ReadyForQuery". */
  readonly type: T;
  /** Type byte. */
  readonly code: number;
  /** The whole message, header included, exactly as it goes on the wire. */
  readonly raw: Buffer;
  /** The payload after the 5-byte header (a view, no copy). */
  readonly payload: Buffer;
  /** The decoded body; decoded on first call and cached. Throws FATAL 08P01 when malformed. */
  body(): B;
}

export interface MessageSpec<T extends string, B> {
  readonly type: T;
  readonly code: number;
  readonly decode: (r: PayloadReader, payload: Buffer) => B;
}

const NOT_DECODED = Symbol('not decoded');

/**
 * A message over a range of a buffer: the socket chunk it was read from (see `FrameSink`) or a
 * buffer of its own. The relay writes the range; `raw` is made only when someone asks for it.
 */
export class LazyMessage<T extends string, B> implements Message<T, B> {
  private cached: B | typeof NOT_DECODED = NOT_DECODED;
  private view: Buffer | undefined = undefined;
  /** Shown to a pipeline as observed, already forwarded: the chain never writes it (src/pipeline/chain.ts). */
  observed = false;

  constructor(
    private readonly spec: MessageSpec<T, B>,
    /** The buffer the message lies in. */
    readonly source: Buffer,
    /** Where the message starts in `source`. */
    readonly offset = 0,
    /** Its length, header included. */
    readonly length = source.length - offset,
    decoded?: B,
  ) {
    if (decoded !== undefined) this.cached = decoded;
  }

  get raw(): Buffer {
    return (this.view ??= frameView(this.source, this.offset, this.length));
  }

  get type(): T {
    return this.spec.type;
  }

  get code(): number {
    return this.spec.code;
  }

  get payload(): Buffer {
    return this.raw.subarray(5);
  }

  body(): B {
    if (this.cached === NOT_DECODED) this.cached = decodeWith(this.spec, this.payload);
    return this.cached;
  }
}

/** Byte `index` of a message's frame, read from the range it lies in when it has one (no view made). */
export function frameByte(message: Message, index: number): number {
  return message instanceof LazyMessage ? message.source[message.offset + index]! : message.raw[index]!;
}

/**
 * The C string a message's payload starts with — a Query's text, a CommandComplete's tag — as its
 * body's decoder reads it, but from the range the message lies in: no view made, nothing kept
 * (for code that reads one field of every message and nothing else). Throws as `body()` does
 * when the string is unterminated.
 */
export function leadingCString(message: Message): string {
  if (!(message instanceof LazyMessage)) return cstringIn(message.payload, 0, message.payload.length, message.type);
  return cstringIn(message.source, message.offset + 5, message.offset + message.length, message.type);
}

function cstringIn(buf: Buffer, start: number, end: number, type: string): string {
  const nul = buf.indexOf(0, start);
  if (nul < 0 || nul >= end) throw protocolViolation(`malformed ${type} message: unterminated string`);
  return utf8Slice.call(buf, start, nul);
}

/**
 * `buf.toString('utf8', start, end)` without its argument checks and encoding lookup (a statement's
 * text and its command tag are decoded for every statement query-log sees): Node's own method
 * behind it, where this Node has it.
 */
const utf8Slice: (this: Buffer, start: number, end: number) => string =
  (Buffer.prototype as unknown as { utf8Slice?: (this: Buffer, start: number, end: number) => string }).utf8Slice ??
  function (this: Buffer, start: number, end: number) {
    return this.toString('utf8', start, end);
  };

export function decodeWith<T extends string, B>(spec: MessageSpec<T, B>, payload: Buffer): B {
  try {
    return spec.decode(new PayloadReader(payload), payload);
  } catch (err) {
    if (err instanceof MalformedMessage) {
      throw protocolViolation(`malformed ${spec.type} message: ${err.message}`);
    }
    throw err;
  }
}

export function spec<T extends string, B>(
  type: T,
  code: string,
  decode: (r: PayloadReader, payload: Buffer) => B,
): MessageSpec<T, B> {
  return { type, code: code.charCodeAt(0), decode };
}

/** A message type the proxy does not know: relayed untouched, its body is the raw payload. */
export function unknownSpec(code: number): MessageSpec<'Unknown', Buffer> {
  return { type: 'Unknown', code, decode: (_r, payload) => payload };
}

/** Shape of a table of specs keyed by type name, used to derive the message unions. */
export type SpecTable = Record<string, MessageSpec<string, unknown>>;

export type MessageOf<S> = S extends MessageSpec<infer T, infer B> ? Message<T, B> : never;
export type BodyOf<S> = S extends MessageSpec<string, infer B> ? B : never;

/** Lookup from type byte to spec, with the unknown-type fallback cached per code. */
export function indexByCode(table: SpecTable): (code: number) => MessageSpec<string, unknown> {
  const byCode: (MessageSpec<string, unknown> | undefined)[] = new Array(256);
  for (const s of Object.values(table)) byCode[s.code] = s;
  return (code) => (byCode[code] ??= unknownSpec(code) as MessageSpec<string, unknown>);
}
