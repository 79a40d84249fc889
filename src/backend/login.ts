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
  let authenticating = false;
  let protocolMinor = minor;
  const user = opts.params.get('user') ?? '';
  const parameters = new Map<string, string>();
  const notices: BackendMessage[] = [];
  let key: BackendConnection['key'];
  let authMethod: BackendAuthMethod = 'trust';
  let scram: ScramClient | null = null;

  const needPassword = (): string => {
    if (opts.password === undefined || opts.password === '') {
      throw new PgError('FATAL', SqlState.SqlclientUnableToEstablishSqlconnection, 'the backend asked for a password but none is configured for it');
    }
    return opts.password;
  };

  for (;;) {
    const frame = await reader.read();
    const msg = backendMessage(frame.code, frame.raw);
    switch (msg.type) {
      case 'Authentication': {
        authenticating = true;
        const auth = msg.body();
        switch (auth.kind) {
          case 'Ok':
            break;
          case 'CleartextPassword':
            authMethod = 'cleartext';
            socket.write(fe.password(needPassword()).raw);
            break;
          case 'MD5Password':
            authMethod = 'md5';
            socket.write(fe.password(md5Response(user, needPassword(), auth.salt)).raw);
            break;
          case 'SASL': {
            const binding = isTls ? channelBinding(socket as TLSSocket) : undefined;
            let mechanism: BackendAuthMethod & ('SCRAM-SHA-256' | 'SCRAM-SHA-256-PLUS');
            try {
              mechanism = chooseMechanism(auth.mechanisms, binding, isTls);
            } catch (err) {
              throw unreachable(target, (err as Error).message);
            }
            scram = new ScramClient(needPassword(), {
              channelBinding: mechanism === 'SCRAM-SHA-256-PLUS' ? binding : undefined,
              tls: binding !== undefined,
            });
            authMethod = mechanism;
            socket.write(fe.saslInitialResponse(mechanism, Buffer.from(scram.clientFirstMessage())).raw);
            break;
          }
          case 'SASLContinue':
            if (!scram) throw loginProtocolError(target, 'SASLContinue without SASL');
            try {
              socket.write(fe.saslResponse(Buffer.from(scram.handleServerFirst(auth.data.toString('utf8')))).raw);
            } catch (err) {
              throw unreachable(target, `SCRAM exchange failed: ${(err as Error).message}`);
            }
            break;
          case 'SASLFinal':
            if (!scram) throw loginProtocolError(target, 'SASLFinal without SASL');
            try {
              scram.verifyServerFinal(auth.data.toString('utf8'));
            } catch (err) {
              throw unreachable(target, `SCRAM server verification failed: ${(err as Error).message}`);
            }
            break;
          default:
            throw unreachable(target, `unsupported authentication method ${auth.kind} requested by the server`);
        }
        break;
      }
      case 'ParameterStatus': {
        const { name, value } = msg.body();
        parameters.set(name, value);
        break;
      }
      case 'BackendKeyData': {
        const { processId, secretKey } = msg.body();
        // Copied (not kept as a view of the read) into memory of its own: Buffer.from would take
        // a slice of Node's shared 8 KiB pool, and the key, held for the session's life, would keep
        // the whole slab alive.
        const own = Buffer.allocUnsafeSlow(secretKey.length);
        secretKey.copy(own);
        key = { processId, secretKey: own };
        break;
      }
      case 'NoticeResponse':
        notices.push(msg);
        break;
      case 'NegotiateProtocolVersion': {
        // We send no _pq_ options, so only the minor can be negotiated down, never up.
        // The field is the whole version (major << 16 | minor), as PostgreSQL sends it.
        const { newestMinor: version } = msg.body();
        if (version >>> 16 !== 3 || (version & 0xffff) > minor) {
          throw loginProtocolError(target, `NegotiateProtocolVersion to ${version >>> 16}.${version & 0xffff}`);
        }
        protocolMinor = version & 0xffff;
        break;
      }
      case 'ErrorResponse': {
        const fields = msg.body();
        const err = PgError.fromFields({ ...fields, severity: 'FATAL', severityV: 'FATAL' });
        refusedByServer.add(err);
        // Before any authentication request this refuses the StartupMessage itself (PgBouncer 1.18:
        // 08P01 "bad packet header"; others: "unsupported frontend protocol").
        const refusesStartup = fields.code === '08P01' || fields.code === '0A000';
        if (minor > 0 && !authenticating && refusesStartup) refusedProtocol.add(err);
        throw err;
      }
      case 'ReadyForQuery': {
        framer.maxLength = Limits.message;
        const leftover = reader.release();
        return { socket, framer, leftover, tls: isTls, authMethod, parameters, key, notices, protocolMinor };
      }
      default:
        throw loginProtocolError(target, `unexpected ${msg.type} message during login`);
    }
  }
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
