// TLS to backends on the native TLS layer (`--nativeTls`): the same sslmode rules as dial.ts's
// Node path — require, verify-ca, verify-full with libpq's host-name rules, sslrootcert (a file,
// or "system": Node's own roots, as the Node path trusts), client certificates, SNI for host
// names — with the handshake done by the addon.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { guardSocket } from '../transport/socket-guard.js';
import { BoundedMemo } from '../util/bounded-memo.js';
import type { PgError } from '../protocol/index.js';
import { NativeTlsContext, nativeTlsAddon } from '../transport/native-tls.js';
import { canTakeOver, NativeTlsSocket, stopReading } from '../transport/native-tls-socket.js';
import { sslmodeVerifiesChain, sslmodeVerifiesHost, type BackendTarget } from './url.js';

let enabled = false;

/** Turns the native TLS layer on or off for backend connections dialed from now on (`--nativeTls`, at start and reload). */
export function useNativeBackendTls(on: boolean): void {
  enabled = on;
}

/** Whether backend TLS runs on the native layer: asked for, and the addon built. */
export function nativeBackendTls(): boolean {
  return enabled && nativeTlsAddon() !== null;
}

/**
 * Contexts per (roots, certificate, key, key password), built once as dial.ts builds Node's: every
 * connection to a target shares one (sessions hold theirs while they live). Emptied with Node's
 * at every reload, so rotated files are read again.
 */
const contexts = new BoundedMemo<string, NativeTlsContext>(256);

export function forgetNativeBackendTlsContexts(): void {
  contexts.clear();
}

function clientContext(target: BackendTarget): NativeTlsContext {
  const rootcert = sslmodeVerifiesChain(target.sslmode, target.sslrootcert) ? target.sslrootcert : undefined;
  const id = JSON.stringify([rootcert, target.sslcert, target.sslkey, target.sslpassword]);
  return contexts.get(id, () =>
    NativeTlsContext.client({
      roots: rootcert === 'system' ? Buffer.from(tls.rootCertificates.join('\n')) : rootcert ? readFileSync(rootcert) : undefined,
      chain: target.sslcert ? readFileSync(target.sslcert) : undefined,
      key: target.sslkey ? readFileSync(target.sslkey) : undefined,
      passphrase: target.sslpassword,
    }),
  );
}

/**
 * The client side of the handshake on `socket` (the backend answered 'S'); undefined when the
 * socket cannot be taken over (the Node path goes on). `fail` makes the 08001 error.
 */
export async function startNativeBackendTls(
  socket: net.Socket,
  target: BackendTarget,
  fail: (why: string, cause?: unknown) => PgError,
  signal?: AbortSignal,
): Promise<NativeTlsSocket | undefined> {
  if (!canTakeOver(socket)) return undefined;
  let context: NativeTlsContext;
  try {
    context = clientContext(target);
  } catch (err) {
    throw fail(`cannot read TLS files: ${(err as Error).message}`, err);
  }
  // Bytes after the 'S' and before the handshake would be taken as the server's: a man-in-the-middle sign.
  if (stopReading(socket).length > 0) throw fail('unexpected data after the TLS answer (possible man-in-the-middle)');
  const host = target.host;
  const t = guardSocket(new NativeTlsSocket(socket, context, {
    server: false,
    servername: net.isIP(host) ? undefined : host,
    verifyHost: sslmodeVerifiesHost(target.sslmode) ? host : undefined,
  }));
  const onAbort = () => t.destroy(new Error('timeout'));
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await t.handshake();
    return t;
  } catch (err) {
    t.destroy();
    throw fail(`TLS handshake failed: ${(err as Error).message}`, err);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
