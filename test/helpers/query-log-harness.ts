/** In-memory harness for query-log's unit tests: one session's chain with query-log, the messages it sees, and what it logs. */
import assert from 'node:assert/strict';
import { Subject } from 'rxjs';
import { queryLog, type QueryEvent, type QueryLogOptions } from '../../src/middleware/query-log.js';
import { buildChain } from '../../src/pipeline/chain.js';
import type { SessionLogger } from '../../src/pipeline/middleware.js';
import { Session } from '../../src/pipeline/session.js';
import {
  backendMessage,
  be,
  fe,
  MessageWriter,
  type BackendMessage,
  type FrontendMessage,
} from '../../src/protocol/index.js';
import { silentLogger } from '../../src/telemetry/log.js';

/** Bodies the middleware may decode; anything else decoded is a failure of the lazy-decode rule. */
const MAY_DECODE = new Set(['Query', 'Parse', 'Bind', 'Execute', 'CommandComplete', 'ErrorResponse']);

/** Wraps a message so that decoding its body is recorded (and, for DataRow, impossible). */
export function spy<M extends FrontendMessage | BackendMessage>(m: M, decoded: string[]): M {
  return {
    type: m.type,
    code: m.code,
    raw: m.raw,
    payload: m.payload,
    body() {
      decoded.push(m.type);
      if (m.type === 'DataRow') throw new Error('DataRow body decoded');
      return m.body();
    },
  } as M;
}

export function harness(opts: QueryLogOptions = {}, log: SessionLogger = silentLogger) {
  let clock = 1000;
  const events: QueryEvent[] = [];
  const decoded: string[] = [];
  const mw = queryLog({ emit: (e) => events.push(e), now: () => clock, ...opts });
  const session = new Session({
    id: 'sess-1',
    client: { address: '127.0.0.1', port: 5000, tls: false },
    clientParams: new Map(),
    log,
  });
  session.user = 'alice';
  session.database = 'app';
  const fromClient = new Subject<FrontendMessage>();
  const fromBackend = new Subject<BackendMessage>();
  const chain = buildChain([mw], session, fromClient, fromBackend);
  const toBackend: FrontendMessage[] = [];
  const toClient: BackendMessage[] = [];
  chain.toBackend$.subscribe((m) => toBackend.push(m));
  chain.toClient$.subscribe((m) => toClient.push(m));
  return {
    events,
    decoded,
    session,
    toBackend,
    toClient,
    client: (...ms: FrontendMessage[]) => ms.forEach((m) => fromClient.next(spy(m, decoded))),
    server: (...ms: BackendMessage[]) => ms.forEach((m) => fromBackend.next(spy(m, decoded))),
    tick: (ms: number) => void (clock += ms),
  };
}

export const rfq = () => be.readyForQuery('I');
export const err = (code: string, message = 'boom') => be.errorResponse({ severity: 'ERROR', code, message });
export const dataRow = () => be.dataRow([Buffer.from('v')]);
export const rowDesc = () =>
  be.rowDescription([{ name: 'x', tableOid: 0, columnAttr: 0, typeOid: 23, typeSize: 4, typeModifier: -1, format: 0 }]);
export const parse = (name: string, sql: string) => fe.parse({ name, sql, paramTypes: [] });
export const bind = (portal: string, statement: string, n = 0) =>
  fe.bind({
    portal,
    statement,
    paramFormats: [],
    params: Array.from({ length: n }, (_, i) => Buffer.from(`secret-value-${i}`)),
    resultFormats: [],
  });
export function raw(code: string, write: (w: MessageWriter) => void = () => {}): BackendMessage {
  const w = new MessageWriter(code.charCodeAt(0));
  write(w);
  const buf = w.finish();
  return backendMessage(buf[0]!, buf);
}
export const copyInResponse = () => raw('G', (w) => w.int8(0).int16(1).int16(0));
export const copyOutResponse = () => raw('H', (w) => w.int8(0).int16(1).int16(0));
export const copyDataBe = (s: string) => raw('d', (w) => w.bytes(Buffer.from(s)));
export const copyDoneBe = () => raw('c');

export function assertLazy(decoded: string[]) {
  const bad = decoded.filter((t) => !MAY_DECODE.has(t));
  assert.deepEqual(bad, [], `decoded bodies it should not have: ${bad.join(', ')}`);
}
