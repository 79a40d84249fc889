// What a session's log says of its TLS connections, whichever layer runs them.
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { NativeTlsSocket } from './native-tls-socket.js';

export interface TlsDescription {
  /** "TLSv1.3", "TLSv1.2". */
  version: string;
  /** OpenSSL's name of the cipher, e.g. "TLS_AES_256_GCM_SHA384". */
  cipher: string;
  /** Who runs it: the native TLS layer (`--nativeTls`) or Node's TLS sockets. */
  layer: 'native' | 'node';
}

/** The negotiated version and cipher of a TLS socket; undefined for a plain one. */
export function describeTls(socket: Duplex): TlsDescription | undefined {
  if (socket instanceof NativeTlsSocket && socket.encrypted) return { version: socket.getProtocol() ?? '', cipher: socket.getCipher().name, layer: 'native' };
  if (socket instanceof TLSSocket) return { version: socket.getProtocol() ?? '', cipher: socket.getCipher()?.name ?? '', layer: 'node' };
  return undefined;
}

