import { MalformedMessage, MessageWriter, PayloadReader } from './buffer-writer.js';
import { PgError, protocolViolation, SqlState, startupPacketRefused } from './errors.js';

/** Request codes of the untyped packets that may open a connection. */
export const RequestCode = {
  Cancel: 80877102,
  SSL: 80877103,
  GSSENC: 80877104,
} as const;

export const PROTOCOL_3_0 = (3 << 16) | 0;
export const PROTOCOL_3_2 = (3 << 16) | 2;

/** First byte of a TLS handshake record: a client using PostgreSQL 17's direct TLS. */
export const TLS_HANDSHAKE_BYTE = 0x16;

export type StartupPacket =
  | { kind: 'SSLRequest' }
  | { kind: 'GSSENCRequest' }
  | { kind: 'CancelRequest'; processId: number; secretKey: Buffer }
  | { kind: 'StartupMessage'; major: number; minor: number; params: Map<string, string> };

/** Decodes one untyped startup-phase packet (`raw` includes its 4-byte length). */
export function decodeStartupPacket(raw: Buffer): StartupPacket {
  const r = new PayloadReader(raw.subarray(4));
  try {
    const code = r.int32();
    if (code === RequestCode.SSL) return expectEnd(r, { kind: 'SSLRequest' });
    if (code === RequestCode.GSSENC) return expectEnd(r, { kind: 'GSSENCRequest' });
    if (code === RequestCode.Cancel) {
      const processId = r.int32();
      const secretKey = Buffer.from(r.rest());
      // PostgreSQL: COMMERROR "invalid length of cancel request packet", nothing sent.
      if (secretKey.length < 4 || secretKey.length > 256) throw startupPacketRefused('invalid length of cancel request packet');
      return { kind: 'CancelRequest', processId, secretKey };
    }
    const major = code >>> 16;
    const minor = code & 0xffff;
    if (major !== 3) {
      // PostgreSQL answers this one (FATAL 0A000), so that old clients can fall back.
      throw new PgError('FATAL', SqlState.FeatureNotSupported, `unsupported frontend protocol ${major}.${minor}: server supports 3.0 to 3.2`);
    }
    const params = new Map<string, string>();
    for (;;) {
      const name = r.cstring();
      if (name === '') break;
      params.set(name, r.cstring());
    }
    r.end('startup packet');
    return { kind: 'StartupMessage', major, minor, params };
  } catch (err) {
    if (err instanceof MalformedMessage) throw protocolViolation(`invalid startup packet layout: ${err.message}`);
    throw err;
  }
}

function expectEnd<T>(r: PayloadReader, value: T): T {
  r.end('request');
  return value;
}

export function encodeStartupMessage(params: Iterable<[string, string]>, minor = 0): Buffer {
  const w = new MessageWriter(null);
  w.int32((3 << 16) | minor);
  for (const [k, v] of params) w.cstring(k).cstring(v);
  w.int8(0);
  return w.finish();
}

export function encodeSSLRequest(): Buffer {
  return new MessageWriter(null).int32(RequestCode.SSL).finish();
}

export function encodeGSSENCRequest(): Buffer {
  return new MessageWriter(null).int32(RequestCode.GSSENC).finish();
}

export function encodeCancelRequest(processId: number, secretKey: Buffer): Buffer {
  return new MessageWriter(null).int32(RequestCode.Cancel).int32(processId).bytes(secretKey).finish();
}
