import { MalformedMessage, MessageWriter, PayloadReader } from './buffer-writer.js';
import { indexByCode, LazyMessage, spec, type Message, type MessageOf } from './message.js';

/** Messages a client sends after startup (PostgreSQL protocol 3.x). */
export const FrontendSpecs = {
  Query: spec('Query', 'Q', (r) => ({ sql: r.cstring() })),
  Parse: spec('Parse', 'P', (r) => {
    const name = r.cstring();
    const sql = r.cstring();
    const n = r.uint16();
    const paramTypes: number[] = [];
    for (let i = 0; i < n; i++) paramTypes.push(r.int32() >>> 0);
    return { name, sql, paramTypes };
  }),
  Bind: spec('Bind', 'B', (r) => {
    const portal = r.cstring();
    const statement = r.cstring();
    const paramFormats = readInt16List(r);
    const n = r.uint16();
    const params: (Buffer | null)[] = [];
    for (let i = 0; i < n; i++) {
      const len = r.int32();
      params.push(len === -1 ? null : r.bytes(len));
    }
    const resultFormats = readInt16List(r);
    return { portal, statement, paramFormats, params, resultFormats };
  }),
  Execute: spec('Execute', 'E', (r) => ({ portal: r.cstring(), maxRows: r.int32() })),
  Describe: spec('Describe', 'D', (r) => ({ kind: describeKind(r), name: r.cstring() })),
  Close: spec('Close', 'C', (r) => ({ kind: describeKind(r), name: r.cstring() })),
  Sync: spec('Sync', 'S', () => ({})),
  Flush: spec('Flush', 'H', () => ({})),
  Terminate: spec('Terminate', 'X', () => ({})),
  CopyData: spec('CopyData', 'd', (r) => ({ data: r.rest() })),
  CopyDone: spec('CopyDone', 'c', () => ({})),
  CopyFail: spec('CopyFail', 'f', (r) => ({ message: r.cstring() })),
  FunctionCall: spec('FunctionCall', 'F', (r) => {
    const oid = r.int32() >>> 0;
    const argFormats = readInt16List(r);
    const n = r.uint16();
    const args: (Buffer | null)[] = [];
    for (let i = 0; i < n; i++) {
      const len = r.int32();
      args.push(len === -1 ? null : r.bytes(len));
    }
    return { oid, argFormats, args, resultFormat: r.int16() };
  }),
  /**
   * 'p': PasswordMessage, SASLInitialResponse, SASLResponse or GSSResponse — which one depends on
   * the authentication request that preceded it, so the body is the raw payload; see
   * `decodePassword`, `decodeSASLInitialResponse`.
   */
  AuthResponse: spec('AuthResponse', 'p', (r) => ({ data: r.rest() })),
} as const;

type Specs = typeof FrontendSpecs;
export type FrontendType = keyof Specs;
export type FrontendBody<T extends FrontendType> = ReturnType<Specs[T]['decode']>;
export type FrontendMessage = MessageOf<Specs[FrontendType]> | Message<'Unknown', Buffer>;

const lookup = indexByCode(FrontendSpecs);

/**
 * Wraps a framed client message, `source[offset, offset + length)` (all of `source` by default);
 * nothing is decoded until `body()` is called.
 */
export function frontendMessage(code: number, source: Buffer, offset?: number, length?: number): FrontendMessage {
  return new LazyMessage(lookup(code), source, offset, length) as FrontendMessage;
}

function readInt16List(r: PayloadReader): number[] {
  const n = r.uint16();
  const list: number[] = [];
  for (let i = 0; i < n; i++) list.push(r.int16());
  return list;
}

function describeKind(r: PayloadReader): 'S' | 'P' {
  const k = String.fromCharCode(r.int8());
  if (k !== 'S' && k !== 'P') throw new MalformedMessage(`bad target type ${k}`);
  return k;
}

export function decodePassword(data: Buffer): string {
  const end = data.indexOf(0);
  return data.toString('utf8', 0, end < 0 ? data.length : end);
}

export function decodeSASLInitialResponse(data: Buffer): { mechanism: string; response: Buffer | null } {
  const r = new PayloadReader(data);
  const mechanism = r.cstring();
  const len = r.int32();
  return { mechanism, response: len === -1 ? null : r.bytes(len) };
}

function build<T extends FrontendType>(type: T, body: FrontendBody<T>, write: (w: MessageWriter) => void) {
  const s = FrontendSpecs[type];
  const w = new MessageWriter(s.code);
  write(w);
  return new LazyMessage(s, w.finish(), 0, undefined, body) as unknown as Extract<FrontendMessage, { type: T }>;
}

function writeValues(w: MessageWriter, values: readonly (Buffer | null)[]): void {
  w.int16(values.length);
  for (const v of values) {
    if (v === null) w.int32(-1);
    else w.int32(v.length).bytes(v);
  }
}

/** Encoders: each returns a message whose body is already known (no decode on read-back). */
export const fe = {
  query: (sql: string) => build('Query', { sql }, (w) => w.cstring(sql)),
  parse: (b: FrontendBody<'Parse'>) =>
    build('Parse', b, (w) => {
      w.cstring(b.name).cstring(b.sql).int16(b.paramTypes.length);
      for (const t of b.paramTypes) w.int32(t | 0);
    }),
  bind: (b: FrontendBody<'Bind'>) =>
    build('Bind', b, (w) => {
      w.cstring(b.portal).cstring(b.statement).int16(b.paramFormats.length);
      for (const f of b.paramFormats) w.int16(f);
      writeValues(w, b.params);
      w.int16(b.resultFormats.length);
      for (const f of b.resultFormats) w.int16(f);
    }),
  execute: (portal = '', maxRows = 0) =>
    build('Execute', { portal, maxRows }, (w) => w.cstring(portal).int32(maxRows)),
  describe: (kind: 'S' | 'P', name = '') =>
    build('Describe', { kind, name }, (w) => w.int8(kind.charCodeAt(0)).cstring(name)),
  close: (kind: 'S' | 'P', name = '') =>
    build('Close', { kind, name }, (w) => w.int8(kind.charCodeAt(0)).cstring(name)),
  sync: () => build('Sync', {}, () => {}),
  flush: () => build('Flush', {}, () => {}),
  terminate: () => build('Terminate', {}, () => {}),
  copyData: (data: Buffer) => build('CopyData', { data }, (w) => w.bytes(data)),
  copyDone: () => build('CopyDone', {}, () => {}),
  copyFail: (message: string) => build('CopyFail', { message }, (w) => w.cstring(message)),
  functionCall: (b: FrontendBody<'FunctionCall'>) =>
    build('FunctionCall', b, (w) => {
      w.int32(b.oid | 0).int16(b.argFormats.length);
      for (const f of b.argFormats) w.int16(f);
      writeValues(w, b.args);
      w.int16(b.resultFormat);
    }),
  password: (password: string) => {
    const data = Buffer.from(password + '\0', 'utf8');
    return build('AuthResponse', { data }, (w) => w.bytes(data));
  },
  saslInitialResponse: (mechanism: string, response: Buffer) => {
    const w = new MessageWriter(null);
    w.cstring(mechanism).int32(response.length).bytes(response);
    const data = w.finish().subarray(4);
    return build('AuthResponse', { data }, (x) => x.bytes(data));
  },
  saslResponse: (response: Buffer) => build('AuthResponse', { data: response }, (w) => w.bytes(response)),
};
