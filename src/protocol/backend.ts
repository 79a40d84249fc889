import { MalformedMessage, MessageWriter, PayloadReader } from './buffer-writer.js';
import type { ErrorFields } from './errors.js';
import { decodeErrorFields, writeErrorFields } from './fields.js';
import { frameByte, indexByCode, LazyMessage, spec, type Message, type MessageOf } from './message.js';

export type TransactionStatus = 'I' | 'T' | 'E';

export type AuthenticationBody =
  | { kind: 'Ok' }
  | { kind: 'KerberosV5' }
  | { kind: 'CleartextPassword' }
  | { kind: 'MD5Password'; salt: Buffer }
  | { kind: 'GSS' }
  | { kind: 'GSSContinue'; data: Buffer }
  | { kind: 'SSPI' }
  | { kind: 'SASL'; mechanisms: string[] }
  | { kind: 'SASLContinue'; data: Buffer }
  | { kind: 'SASLFinal'; data: Buffer };

const AUTH_KINDS: Record<number, AuthenticationBody['kind']> = {
  0: 'Ok', 2: 'KerberosV5', 3: 'CleartextPassword', 5: 'MD5Password', 7: 'GSS', 8: 'GSSContinue',
  9: 'SSPI', 10: 'SASL', 11: 'SASLContinue', 12: 'SASLFinal',
};

function decodeAuthentication(r: PayloadReader): AuthenticationBody {
  const n = r.int32();
  const kind = AUTH_KINDS[n];
  switch (kind) {
    case 'MD5Password':
      return { kind, salt: r.bytes(4) };
    case 'SASL': {
      const mechanisms: string[] = [];
      for (let m = r.cstring(); m !== ''; m = r.cstring()) mechanisms.push(m);
      return { kind, mechanisms };
    }
    case 'SASLContinue':
    case 'SASLFinal':
    case 'GSSContinue':
      return { kind, data: r.rest() };
    case undefined:
      throw new MalformedMessage(`unknown authentication request ${n}`);
    default:
      return { kind } as AuthenticationBody;
  }
}

export interface FieldDescription {
  name: string;
  tableOid: number;
  columnAttr: number;
  typeOid: number;
  typeSize: number;
  typeModifier: number;
  format: number;
}

/** Messages a server sends (PostgreSQL protocol 3.x). */
export const BackendSpecs = {
  Authentication: spec('Authentication', 'R', decodeAuthentication),
  /** `secretKey` is 4 bytes in protocol 3.0 and up to 256 bytes in 3.2. */
  BackendKeyData: spec('BackendKeyData', 'K', (r) => ({ processId: r.int32(), secretKey: r.rest() })),
  BindComplete: spec('BindComplete', '2', () => ({})),
  CloseComplete: spec('CloseComplete', '3', () => ({})),
  CommandComplete: spec('CommandComplete', 'C', (r) => ({ tag: r.cstring() })),
  CopyData: spec('CopyData', 'd', (r) => ({ data: r.rest() })),
  CopyDone: spec('CopyDone', 'c', () => ({})),
  CopyInResponse: spec('CopyInResponse', 'G', decodeCopyResponse),
  CopyOutResponse: spec('CopyOutResponse', 'H', decodeCopyResponse),
  CopyBothResponse: spec('CopyBothResponse', 'W', decodeCopyResponse),
  DataRow: spec('DataRow', 'D', (r) => {
    const n = r.uint16();
    const values: (Buffer | null)[] = [];
    for (let i = 0; i < n; i++) {
      const len = r.int32();
      values.push(len === -1 ? null : r.bytes(len));
    }
    return { values };
  }),
  EmptyQueryResponse: spec('EmptyQueryResponse', 'I', () => ({})),
  ErrorResponse: spec('ErrorResponse', 'E', (r): ErrorFields => decodeErrorFields(r)),
  FunctionCallResponse: spec('FunctionCallResponse', 'V', (r) => {
    const len = r.int32();
    return { value: len === -1 ? null : r.bytes(len) };
  }),
  NegotiateProtocolVersion: spec('NegotiateProtocolVersion', 'v', (r) => {
    const newestMinor = r.int32();
    const n = r.int32();
    const unrecognized: string[] = [];
    for (let i = 0; i < n; i++) unrecognized.push(r.cstring());
    return { newestMinor, unrecognized };
  }),
  NoData: spec('NoData', 'n', () => ({})),
  NoticeResponse: spec('NoticeResponse', 'N', (r): ErrorFields => decodeErrorFields(r)),
  NotificationResponse: spec('NotificationResponse', 'A', (r) => ({
    processId: r.int32(),
    channel: r.cstring(),
    payload: r.cstring(),
  })),
  ParameterDescription: spec('ParameterDescription', 't', (r) => {
    const n = r.uint16();
    const types: number[] = [];
    for (let i = 0; i < n; i++) types.push(r.int32() >>> 0);
    return { types };
  }),
  ParameterStatus: spec('ParameterStatus', 'S', (r) => ({ name: r.cstring(), value: r.cstring() })),
  ParseComplete: spec('ParseComplete', '1', () => ({})),
  PortalSuspended: spec('PortalSuspended', 's', () => ({})),
  ReadyForQuery: spec('ReadyForQuery', 'Z', (r) => {
    const status = String.fromCharCode(r.int8());
    if (status !== 'I' && status !== 'T' && status !== 'E') {
      throw new MalformedMessage(`bad transaction status ${status}`);
    }
    return { status: status as TransactionStatus };
  }),
  RowDescription: spec('RowDescription', 'T', (r) => {
    const n = r.uint16();
    const fields: FieldDescription[] = [];
    for (let i = 0; i < n; i++) {
      fields.push({
        name: r.cstring(),
        tableOid: r.int32() >>> 0,
        columnAttr: r.int16(),
        typeOid: r.int32() >>> 0,
        typeSize: r.int16(),
        typeModifier: r.int32(),
        format: r.int16(),
      });
    }
    return { fields };
  }),
} as const;

function decodeCopyResponse(r: PayloadReader) {
  const format = r.int8();
  const n = r.uint16();
  const columnFormats: number[] = [];
  for (let i = 0; i < n; i++) columnFormats.push(r.int16());
  return { format, columnFormats };
}

type Specs = typeof BackendSpecs;
export type BackendType = keyof Specs;
export type BackendBody<T extends BackendType> = ReturnType<Specs[T]['decode']>;
export type BackendMessage = MessageOf<Specs[BackendType]> | Message<'Unknown', Buffer>;

const lookup = indexByCode(BackendSpecs);

/**
 * Wraps a framed server message, `source[offset, offset + length)` (all of `source` by default);
 * nothing is decoded until `body()` is called.
 */
export function backendMessage(code: number, source: Buffer, offset?: number, length?: number): BackendMessage {
  return new LazyMessage(lookup(code), source, offset, length) as BackendMessage;
}

/** Transaction status straight from a ReadyForQuery message, without decoding a body or making a view. */
export function readyStatus(message: Message): TransactionStatus {
  return String.fromCharCode(frameByte(message, 5)) as TransactionStatus;
}

function build<T extends BackendType>(type: T, body: BackendBody<T>, write: (w: MessageWriter) => void) {
  const s = BackendSpecs[type];
  const w = new MessageWriter(s.code);
  write(w);
  return new LazyMessage(s, w.finish(), 0, undefined, body) as unknown as Extract<BackendMessage, { type: T }>;
}

const AUTH_CODES = Object.fromEntries(Object.entries(AUTH_KINDS).map(([n, k]) => [k, Number(n)])) as Record<
  AuthenticationBody['kind'],
  number
>;

function authentication(body: AuthenticationBody) {
  return build('Authentication', body, (w) => {
    w.int32(AUTH_CODES[body.kind]);
    if (body.kind === 'MD5Password') w.bytes(body.salt);
    else if (body.kind === 'SASL') {
      for (const m of body.mechanisms) w.cstring(m);
      w.int8(0);
    } else if ('data' in body) w.bytes(body.data);
  });
}

/** Encoders: each returns a message whose body is already known. */
export const be = {
  authentication,
  authOk: () => authentication({ kind: 'Ok' }),
  authCleartext: () => authentication({ kind: 'CleartextPassword' }),
  authMD5: (salt: Buffer) => authentication({ kind: 'MD5Password', salt }),
  backendKeyData: (processId: number, secretKey: Buffer) =>
    build('BackendKeyData', { processId, secretKey }, (w) => w.int32(processId).bytes(secretKey)),
  parameterStatus: (name: string, value: string) =>
    build('ParameterStatus', { name, value }, (w) => w.cstring(name).cstring(value)),
  readyForQuery: (status: TransactionStatus) =>
    build('ReadyForQuery', { status }, (w) => w.int8(status.charCodeAt(0))),
  errorResponse: (fields: ErrorFields) => build('ErrorResponse', fields, (w) => writeErrorFields(w, fields)),
  noticeResponse: (fields: ErrorFields) => build('NoticeResponse', fields, (w) => writeErrorFields(w, fields)),
  commandComplete: (tag: string) => build('CommandComplete', { tag }, (w) => w.cstring(tag)),
  emptyQueryResponse: () => build('EmptyQueryResponse', {}, () => {}),
  parseComplete: () => build('ParseComplete', {}, () => {}),
  bindComplete: () => build('BindComplete', {}, () => {}),
  closeComplete: () => build('CloseComplete', {}, () => {}),
  noData: () => build('NoData', {}, () => {}),
  portalSuspended: () => build('PortalSuspended', {}, () => {}),
  parameterDescription: (types: number[]) =>
    build('ParameterDescription', { types }, (w) => {
      w.int16(types.length);
      for (const t of types) w.int32(t | 0);
    }),
  rowDescription: (fields: FieldDescription[]) =>
    build('RowDescription', { fields }, (w) => {
      w.int16(fields.length);
      for (const f of fields) {
        w.cstring(f.name).int32(f.tableOid | 0).int16(f.columnAttr).int32(f.typeOid | 0);
        w.int16(f.typeSize).int32(f.typeModifier).int16(f.format);
      }
    }),
  dataRow: (values: (Buffer | null)[]) =>
    build('DataRow', { values }, (w) => {
      w.int16(values.length);
      for (const v of values) {
        if (v === null) w.int32(-1);
        else w.int32(v.length).bytes(v);
      }
    }),
  negotiateProtocolVersion: (newestMinor: number, unrecognized: string[]) =>
    build('NegotiateProtocolVersion', { newestMinor, unrecognized }, (w) => {
      w.int32(newestMinor).int32(unrecognized.length);
      for (const o of unrecognized) w.cstring(o);
    }),
  notificationResponse: (processId: number, channel: string, payload: string) =>
    build('NotificationResponse', { processId, channel, payload }, (w) =>
      w.int32(processId).cstring(channel).cstring(payload),
    ),
};
