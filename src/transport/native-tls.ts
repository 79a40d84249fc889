// The native TLS layer (native/tls*.c, in the pgward_relay addon): TLS with the OpenSSL Node
// itself contains, driven from libuv's loop. This file loads it and makes its contexts; the socket
// over an endpoint is `NativeTlsSocket` (native-tls-socket.ts).
import tls from 'node:tls';
import { nativeAddon } from './native-addon.js';

/** Events an endpoint's callback receives; the numbers are native/tls-endpoint.h's. */
export const enum TlsEvent {
  Secure = 1,
  Data = 2,
  Eof = 3,
  Error = 4,
  Drain = 5,
  Finished = 6,
}

/** The addon's `tls` functions (native/tls-binding.c). Handles are opaque externals. */
export interface TlsAddon {
  serverContext(chainPem: Uint8Array, keyPem: Uint8Array, ciphers: string | null): object;
  clientContext(rootsPem: Uint8Array | null, chainPem: Uint8Array | null, keyPem: Uint8Array | null, passphrase: string | null, ciphers: string | null): object;
  open(
    context: object,
    fd: number,
    server: boolean,
    servername: string | null,
    verifyHost: string | null,
    prefix: Uint8Array | null,
    callback: (event: TlsEvent, data?: Buffer | string) => void,
  ): object;
  /** A plain TCP socket's descriptor as an endpoint without TLS: open at once (no Secure event), same calls as a TLS one. */
  openPlain(fd: number, callback: (event: TlsEvent, data?: Buffer | string) => void): object;
  setReading(endpoint: object, on: boolean): void;
  /** 1 written, 0 queued (a Drain event follows), -1 failed (`error` says why). */
  write(endpoint: object, bytes: Uint8Array): number;
  /** 1 close_notify and FIN sent, 0 a Finished event follows, -1 failed. */
  end(endpoint: object): number;
  close(endpoint: object): void;
  info(endpoint: object): { version?: string; cipher?: string; alpn?: string };
  peerCertificate(endpoint: object): Buffer | undefined;
  error(endpoint: object): string;
  live(): number;
  /**
   * The lending contract of native/tls.h (`tls_endpoint_lend`, `tls_read`, `tls_write`,
   * `tls_poll_events`, `tls_endpoint_give_back`) as native code uses it, for tests of it.
   */
  lend(endpoint: object): object | undefined;
  loanRead(loan: object): Buffer | number;
  loanWrite(loan: object, bytes: Uint8Array): number;
  loanEvents(loan: object, wantRead: boolean, wantWrite: boolean): number;
  giveBack(loan: object): void;
  /** OPENSSL_VERSION_TEXT of the headers it was built with. */
  openssl: string;
}

let loaded: TlsAddon | null | undefined;
let loadError: string | undefined;

/** The addon's TLS functions, or null when the addon is not built (or predates the TLS layer). */
export function nativeTlsAddon(): TlsAddon | null {
  if (loaded !== undefined) return loaded;
  const addon = nativeAddon();
  if ('error' in addon) {
    loaded = null;
    loadError = addon.error;
  } else {
    loaded = (addon.lib.tls as TlsAddon | undefined) ?? null;
    if (!loaded) loadError = 'the native addon has no TLS layer (rebuild it)';
  }
  return loaded;
}

/** Whether the native TLS layer loads here; when not, why (for the operator's log). */
export function nativeTlsAvailability(): { available: true } | { available: false; reason: string } {
  return nativeTlsAddon() ? { available: true } : { available: false, reason: loadError ?? 'not built' };
}

export interface ClientContextOptions {
  /** PEM roots the server's chain must verify against; absent: no verification (sslmode require). */
  roots?: Uint8Array;
  /** A client certificate chain and its key (sslcert/sslkey). */
  chain?: Uint8Array;
  key?: Uint8Array;
  /** Decrypts an encrypted key (sslpassword). */
  passphrase?: string;
}

/**
 * A native TLS context (an SSL_CTX): a server's chain and key, or a client's roots and
 * certificate. TLS 1.2 and 1.3, Node's default cipher list. Sessions hold it while they live, so a
 * context replaced on reload goes away with its last session.
 */
export class NativeTlsContext {
  private constructor(
    readonly lib: TlsAddon,
    readonly handle: object,
  ) {}

  /** Throws an Error saying why (an unreadable chain, a key that does not match it, …). */
  static server(chainPem: Uint8Array, keyPem: Uint8Array): NativeTlsContext {
    const lib = required();
    return new NativeTlsContext(lib, lib.serverContext(chainPem, keyPem, tls.DEFAULT_CIPHERS));
  }

  static client(o: ClientContextOptions): NativeTlsContext {
    const lib = required();
    return new NativeTlsContext(lib, lib.clientContext(o.roots ?? null, o.chain ?? null, o.key ?? null, o.passphrase ?? null, tls.DEFAULT_CIPHERS));
  }
}

function required(): TlsAddon {
  const lib = nativeTlsAddon();
  if (!lib) throw new Error(`the native TLS layer is not available: ${loadError ?? 'not built'}`);
  return lib;
}

/** How many native TLS endpoints are allocated in this process (for leak checks). */
export function liveNativeTlsEndpoints(): number {
  return nativeTlsAddon()?.live() ?? 0;
}
