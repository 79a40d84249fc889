import { X509Certificate } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import {
  backendMessage,
  encodeStartupMessage,
  fe,
  Framer,
  Limits,
  PgError,
  SqlState,
  type AuthenticationBody,
  type BackendMessage,
} from '../protocol/index.js';
import { FrameReader, type Frame } from '../transport/socket-io.js';
import { tlsServerEndPoint } from './channel-binding.js';
import { dialBackend, unreachable } from './dial.js';
import { md5Response } from './md5.js';
import { chooseMechanism, ScramClient } from './scram.js';
import type { BackendTarget } from './url.js';

export type BackendAuthMethod = 'trust' | 'cleartext' | 'md5' | 'SCRAM-SHA-256' | 'SCRAM-SHA-256-PLUS';

export interface BackendConnection {
  socket: Duplex;
  framer: Framer;
  /** Messages the backend sent after its ReadyForQuery that arrived in the same read. */
  leftover: Frame[];
  tls: boolean;
  authMethod: BackendAuthMethod;
  /** ParameterStatus values in the order received. */
  parameters: Map<string, string>;
  /** The backend's own cancel key (never shown to clients): a 4-byte secret in protocol 3.0, up to 256 bytes in 3.2 (32 from PostgreSQL 18). */
  key?: { processId: number; secretKey: Buffer };
  /** The protocol minor the session runs (3.<minor>): what we asked for, or what NegotiateProtocolVersion lowered it to. */
  protocolMinor: number;
  /** NoticeResponses sent during login, to pass on to the client. */
  notices: BackendMessage[];
}

export interface LoginOptions {
  /** Startup parameters to send (user and database included). */
  params: Map<string, string>;
  /** Password or `md5…` hash for the backend, if it asks for one. */
  password?: string;
  signal?: AbortSignal;
}

/**
 * Connects to a backend and logs in: TLS per sslmode, then whatever authentication the server
 * asks for, up to its first ReadyForQuery. Backend ErrorResponses are rethrown with their own
 * SQLSTATE; network failures and timeouts become 08001.
 */
export async function connectBackend(target: BackendTarget, opts: LoginOptions): Promise<BackendConnection> {
  let usedTls: boolean | undefined;
  try {
    return await connectWithProtocol(target, opts, (tls) => (usedTls = tls));
  } catch (err) {
    // As libpq: `allow` retries with TLS and `prefer` without it when the server refused the
    // first try during login (e.g. a hostssl or hostnossl pg_hba.conf line).
    const retry = err instanceof PgError && refusedByServer.has(err) && !opts.signal?.aborted
      ? fallbackSslMode(target.sslmode, usedTls)
      : undefined;
    if (!retry) throw err;
    return connectWithProtocol({ ...target, sslmode: retry }, opts, () => {});
  }
}

/**
 * Asks for protocol 3.2 unless the URL says otherwise (PostgreSQL 14–17 answer with
 * NegotiateProtocolVersion and go on in 3.0); a server or pooler that refuses the StartupMessage
 * instead (08P01 / 0A000 before any authentication, e.g. PgBouncer 1.18) is asked again with 3.0.
 */
async function connectWithProtocol(target: BackendTarget, opts: LoginOptions, onDialed: (tls: boolean) => void): Promise<BackendConnection> {
  const minor = target.maxProtocolMinor ?? 2;
  if (minor === 0) return connectOnce(target, opts, onDialed, 0);
  try {
    return await connectOnce(target, opts, onDialed, minor);
  } catch (err) {
    if (!(err instanceof PgError && refusedProtocol.has(err)) || opts.signal?.aborted) throw err;
    return connectOnce(target, opts, onDialed, 0);
  }
}

/** ErrorResponses that refused the protocol version we asked for. */
const refusedProtocol = new WeakSet<PgError>();

/** ErrorResponses the server sent during login (as opposed to our own failures). */
const refusedByServer = new WeakSet<PgError>();

/** The backend itself refused the login with an ErrorResponse (e.g. 28P01, 42704, 53300). */
export function isBackendRefusal(err: unknown): boolean {
  return err instanceof PgError && refusedByServer.has(err);
}

/** Marks `err` as the backend's own refusal of the session (e.g. a startup parameter applied later). */
export function asBackendRefusal(err: PgError): PgError {
  refusedByServer.add(err);
  return err;
}

function fallbackSslMode(mode: BackendTarget['sslmode'], usedTls: boolean | undefined): BackendTarget['sslmode'] | undefined {
  if (mode === 'allow' && usedTls === false) return 'require';
  if (mode === 'prefer' && usedTls === true) return 'disable';
  return undefined;
}

async function connectOnce(
  target: BackendTarget,
  opts: LoginOptions,
  onDialed: (tls: boolean) => void,
  minor: number,
): Promise<BackendConnection> {
  const controller = new AbortController();
  const onOuterAbort = () => controller.abort();
  opts.signal?.addEventListener('abort', onOuterAbort, { once: true });
  const deadline = setTimeout(() => controller.abort(), target.connectTimeoutMs);
  let socket: Duplex | undefined;
  try {
    const dialed = await dialBackend(target, controller.signal);
    socket = dialed.socket;
    onDialed(dialed.tls);
    const onAbort = () => socket?.destroy(unreachable(target, 'timeout during login'));
    controller.signal.addEventListener('abort', onAbort, { once: true });
    try {
      return await login(target, dialed.socket, dialed.tls, opts, minor);
    } finally {
      controller.signal.removeEventListener('abort', onAbort);
    }
  } catch (err) {
    socket?.destroy();
    if (err instanceof PgError) throw err;
    throw unreachable(target, (err as Error).message, err);
  } finally {
    clearTimeout(deadline);
    opts.signal?.removeEventListener('abort', onOuterAbort);
  }
}

/** What a login has learned from the backend so far, and what it needs to answer it. */
interface LoginState {
  readonly target: BackendTarget;
  readonly socket: Duplex;
  readonly isTls: boolean;
  readonly opts: LoginOptions;
  /** The protocol minor asked for. */
  readonly minor: number;
  authenticating: boolean;
  protocolMinor: number;
  readonly parameters: Map<string, string>;
  readonly notices: BackendMessage[];
  key?: BackendConnection['key'];
  authMethod: BackendAuthMethod;
  scram: ScramClient | null;
}

async function login(
  target: BackendTarget,
  socket: Duplex,
  isTls: boolean,
  opts: LoginOptions,
  minor: number,
): Promise<BackendConnection> {
  const framer = new Framer({ maxLength: Limits.authMessage });
  const reader = new FrameReader(socket, framer, 'backend');
  socket.write(encodeStartupMessage(opts.params, minor));
  const state: LoginState = {
    target, socket, isTls, opts, minor,
    authenticating: false,
    protocolMinor: minor,
    parameters: new Map(),
    notices: [],
    authMethod: 'trust',
    scram: null,
  };
  for (;;) {
    const frame = await reader.read();
    const msg = backendMessage(frame.code, frame.raw);
    if (msg.type === 'ReadyForQuery') {
      framer.maxLength = Limits.message;
      const { authMethod, parameters, key, notices, protocolMinor } = state;
      return { socket, framer, leftover: reader.release(), tls: isTls, authMethod, parameters, key, notices, protocolMinor };
    }
    takeLoginMessage(msg, state);
  }
}

/** One message of the backend's login reply before its ReadyForQuery. */
function takeLoginMessage(msg: BackendMessage, s: LoginState): void {
  switch (msg.type) {
    case 'Authentication':
      s.authenticating = true;
      return answerAuthentication(msg.body(), s);
    case 'ParameterStatus': {
      const { name, value } = msg.body();
      s.parameters.set(name, value);
      return;
    }
    case 'BackendKeyData': {
      const { processId, secretKey } = msg.body();
      // Copied (not kept as a view of the read) into memory of its own: Buffer.from would take
      // a slice of Node's shared 8 KiB pool, and the key, held for the session's life, would keep
      // the whole slab alive.
      const own = Buffer.allocUnsafeSlow(secretKey.length);
      secretKey.copy(own);
      s.key = { processId, secretKey: own };
      return;
    }
    case 'NoticeResponse':
      s.notices.push(msg);
      return;
    case 'NegotiateProtocolVersion': {
      // We send no _pq_ options, so only the minor can be negotiated down, never up.
      // The field is the whole version (major << 16 | minor), as PostgreSQL sends it.
      const { newestMinor: version } = msg.body();
      if (version >>> 16 !== 3 || (version & 0xffff) > s.minor) {
        throw loginProtocolError(s.target, `NegotiateProtocolVersion to ${version >>> 16}.${version & 0xffff}`);
      }
      s.protocolMinor = version & 0xffff;
      return;
    }
    case 'ErrorResponse': {
      const fields = msg.body();
      const err = PgError.fromFields({ ...fields, severity: 'FATAL', severityV: 'FATAL' });
      refusedByServer.add(err);
      // Before any authentication request this refuses the StartupMessage itself (PgBouncer 1.18:
      // 08P01 "bad packet header"; others: "unsupported frontend protocol").
      const refusesStartup = fields.code === '08P01' || fields.code === '0A000';
      if (s.minor > 0 && !s.authenticating && refusesStartup) refusedProtocol.add(err);
      throw err;
    }
    default:
      throw loginProtocolError(s.target, `unexpected ${msg.type} message during login`);
  }
}

/** Answers one authentication request with the configured password, as its method asks. */
function answerAuthentication(auth: AuthenticationBody, s: LoginState): void {
  const { socket, target } = s;
  switch (auth.kind) {
    case 'Ok':
      return;
    case 'CleartextPassword':
      s.authMethod = 'cleartext';
      socket.write(fe.password(neededPassword(s.opts)).raw);
      return;
    case 'MD5Password':
      s.authMethod = 'md5';
      socket.write(fe.password(md5Response(s.opts.params.get('user') ?? '', neededPassword(s.opts), auth.salt)).raw);
      return;
    case 'SASL':
      return startScram(auth.mechanisms, s);
    case 'SASLContinue':
      if (!s.scram) throw loginProtocolError(target, 'SASLContinue without SASL');
      try {
        socket.write(fe.saslResponse(Buffer.from(s.scram.handleServerFirst(auth.data.toString('utf8')))).raw);
      } catch (err) {
        throw unreachable(target, `SCRAM exchange failed: ${(err as Error).message}`);
      }
      return;
    case 'SASLFinal':
      if (!s.scram) throw loginProtocolError(target, 'SASLFinal without SASL');
      try {
        s.scram.verifyServerFinal(auth.data.toString('utf8'));
      } catch (err) {
        throw unreachable(target, `SCRAM server verification failed: ${(err as Error).message}`);
      }
      return;
    default:
      throw unreachable(target, `unsupported authentication method ${auth.kind} requested by the server`);
  }
}

/** SCRAM-SHA-256, with channel binding (-PLUS) when the connection is TLS and the server offers it. */
function startScram(mechanisms: string[], s: LoginState): void {
  const binding = s.isTls ? channelBinding(s.socket as TLSSocket) : undefined;
  let mechanism: BackendAuthMethod & ('SCRAM-SHA-256' | 'SCRAM-SHA-256-PLUS');
  try {
    mechanism = chooseMechanism(mechanisms, binding, s.isTls);
  } catch (err) {
    throw unreachable(s.target, (err as Error).message);
  }
  s.scram = new ScramClient(neededPassword(s.opts), {
    channelBinding: mechanism === 'SCRAM-SHA-256-PLUS' ? binding : undefined,
    tls: binding !== undefined,
  });
  s.authMethod = mechanism;
  s.socket.write(fe.saslInitialResponse(mechanism, Buffer.from(s.scram.clientFirstMessage())).raw);
}

function neededPassword(opts: LoginOptions): string {
  if (opts.password === undefined || opts.password === '') {
    throw new PgError('FATAL', SqlState.SqlclientUnableToEstablishSqlconnection, 'the backend asked for a password but none is configured for it');
  }
  return opts.password;
}

function loginProtocolError(target: BackendTarget, what: string): PgError {
  return unreachable(target, `protocol error: ${what}`);
}

function channelBinding(socket: TLSSocket): Buffer | undefined {
  const cert = socket.getPeerX509Certificate?.() as X509Certificate | undefined;
  if (!cert) return undefined;
  try {
    return tlsServerEndPoint(cert.raw);
  } catch {
    return undefined;
  }
}
