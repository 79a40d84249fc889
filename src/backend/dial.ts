import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { connectWithOwnReadBuffer } from '../transport/own-read.js';
import { guardSocket } from '../transport/socket-guard.js';
import { BoundedMemo } from '../util/bounded-memo.js';
import { encodeSSLRequest, PgError, SqlState } from '../protocol/index.js';
import type { NativeTlsSocket } from '../transport/native-tls-socket.js';
import { forgetNativeBackendTlsContexts, nativeBackendTls, startNativeBackendTls } from './native-tls-dial.js';
import {
  describeTarget,
  sslmodeRequiresTls,
  sslmodeVerifiesChain,
  sslmodeVerifiesHost,
  type BackendTarget,
} from './url.js';

export interface DialedBackend {
  socket: net.Socket | tls.TLSSocket | NativeTlsSocket;
  tls: boolean;
}

export function unreachable(target: BackendTarget, why: string, cause?: unknown): PgError {
  return new PgError('FATAL', SqlState.SqlclientUnableToEstablishSqlconnection, `could not connect to the backend ${describeTarget(target)}: ${why}`, {
    cause,
  });
}

/**
 * Opens a TCP connection, failing with 08001 after the target's connect timeout. A connection
 * that will stay plain (`plain`) reads into a buffer of its own, the cheaper path for the relay.
 */
export function dialTcp(target: BackendTarget, signal?: AbortSignal, plain = false): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const options = { host: target.host, port: target.port, noDelay: true };
    const socket = plain ? connectWithOwnReadBuffer(options) : guardSocket(net.connect(options));
    const timer = setTimeout(() => fail(new Error('timeout')), target.connectTimeoutMs);
    const onAbort = () => fail(new Error('aborted'));
    signal?.addEventListener('abort', onAbort, { once: true });
    function cleanup() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.off('connect', onConnect);
      socket.off('error', fail);
    }
    function fail(err: Error) {
      cleanup();
      socket.destroy();
      reject(unreachable(target, (err as NodeJS.ErrnoException).code ?? err.message, err));
    }
    function onConnect() {
      cleanup();
      socket.setKeepAlive(true, 60_000);
      // Each relayed chunk is one write already; Nagle would only hold a query back for an ACK.
      socket.setNoDelay(true);
      resolve(socket);
    }
    socket.once('connect', onConnect);
    socket.once('error', fail);
  });
}

/** Reads the single-byte answer to SSLRequest; anything more is a man-in-the-middle sign. */
function readSslAnswer(socket: net.Socket, target: BackendTarget): Promise<'S' | 'N'> {
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      cleanup();
      if (chunk.length !== 1) {
        socket.destroy();
        return reject(unreachable(target, 'unexpected data after the TLS answer (possible man-in-the-middle)'));
      }
      const c = String.fromCharCode(chunk[0]!);
      if (c === 'S' || c === 'N') return resolve(c);
      socket.destroy();
      reject(unreachable(target, 'the server does not support TLS negotiation'));
    };
    const onEnd = () => {
      cleanup();
      reject(unreachable(target, 'connection closed during TLS negotiation'));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(unreachable(target, (err as NodeJS.ErrnoException).code ?? err.message, err));
    };
    function cleanup() {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
      socket.pause();
    }
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.resume();
  });
}

/**
 * TLS settings per (CA, certificate, key, key password): built once, not per connection (Node
 * would otherwise read the files and build a context at every dial, ~0.2–0.5 ms). Emptied by
 * `forgetBackendTlsContexts` at every reload (the native TLS layer's too), so rotated files are read again.
 */
const contexts = new BoundedMemo<string, tls.SecureContext>(256);

export function forgetBackendTlsContexts(): void {
  contexts.clear();
  forgetNativeBackendTlsContexts();
}

function secureContextFor(target: BackendTarget): tls.SecureContext {
  const rootcert = target.sslrootcert && target.sslrootcert !== 'system' ? target.sslrootcert : undefined;
  const key = JSON.stringify([rootcert, target.sslcert, target.sslkey, target.sslpassword]);
  return contexts.get(key, () =>
    tls.createSecureContext({
      ca: rootcert ? readFileSync(rootcert) : undefined,
      cert: target.sslcert ? readFileSync(target.sslcert) : undefined,
      key: target.sslkey ? readFileSync(target.sslkey) : undefined,
      passphrase: target.sslpassword,
    }),
  );
}

function tlsOptions(target: BackendTarget, socket: net.Socket): tls.ConnectionOptions {
  const verifyChain = sslmodeVerifiesChain(target.sslmode, target.sslrootcert);
  const verifyHost = sslmodeVerifiesHost(target.sslmode);
  const opts: tls.ConnectionOptions = {
    socket,
    rejectUnauthorized: verifyChain,
    ALPNProtocols: ['postgresql'],
    secureContext: secureContextFor(target),
  };
  if (!net.isIP(target.host)) opts.servername = target.host;
  // verify-ca checks the chain but not the name; verify-full checks both (node's default check).
  if (verifyChain && !verifyHost) opts.checkServerIdentity = () => undefined;
  if (verifyHost) opts.checkServerIdentity = (_host, cert) => tls.checkServerIdentity(target.host, cert);
  return opts;
}

/** Dials the backend and negotiates TLS as the target's sslmode asks. */
export async function dialBackend(target: BackendTarget, signal?: AbortSignal): Promise<DialedBackend> {
  const plain = target.sslmode === 'disable' || target.sslmode === 'allow';
  const socket = await dialTcp(target, signal, plain);
  if (plain) return { socket, tls: false };
  try {
    socket.write(encodeSSLRequest());
    const answer = await readSslAnswer(socket, target);
    if (answer === 'N') {
      if (sslmodeRequiresTls(target.sslmode)) throw unreachable(target, 'the server does not accept TLS');
      return { socket, tls: false };
    }
    if (nativeBackendTls()) {
      const native = await startNativeBackendTls(socket, target, (why, cause) => unreachable(target, why, cause), signal);
      if (native) return { socket: native, tls: true };
    }
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      let opts: tls.ConnectionOptions;
      try {
        opts = tlsOptions(target, socket);
      } catch (err) {
        return reject(unreachable(target, `cannot read TLS files: ${(err as Error).message}`, err));
      }
      const t = guardSocket(tls.connect(opts, () => {
        t.off('error', onError);
        resolve(t);
      }));
      const onError = (err: Error) => reject(unreachable(target, `TLS handshake failed: ${err.message}`, err));
      t.once('error', onError);
    });
    return { socket: secure, tls: true };
  } catch (err) {
    socket.destroy();
    throw err;
  }
}
