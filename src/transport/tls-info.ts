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
  if (socket instanceof NativeTlsSocket) return { version: socket.getProtocol() ?? '', cipher: socket.getCipher().name, layer: 'native' };
  if (socket instanceof TLSSocket) return { version: socket.getProtocol() ?? '', cipher: socket.getCipher()?.name ?? '', layer: 'node' };
  return undefined;
}

/** `<prefix>_version`, `<prefix>_cipher` and `<prefix>_layer` log fields; none for a plain socket. */
export function tlsLogFields(prefix: string, socket: Duplex): Record<string, string> {
  const d = describeTls(socket);
  return d ? { [`${prefix}_version`]: d.version, [`${prefix}_cipher`]: d.cipher, [`${prefix}_layer`]: d.layer } : {};
}
