import type { Duplex } from 'node:stream';
import { nativeAddon } from '../transport/native-addon.js';

/**
 * What a look at an idle backend connection's descriptor says, without a round trip: `quiet`
 * (open, and the backend said nothing since it went idle), `gone` (it closed, failed, or said
 * something — a terminated backend's FATAL — that nobody has read yet), or undefined when it
 * cannot be looked at (the native addon is not built, or the socket has no descriptor of its own,
 * as Node's TLSSocket): the pool then asks the backend with a Sync instead.
 */
export type IdleLook = 'quiet' | 'gone';

interface LivenessAddon {
  /** 0 quiet and open, 1 bytes waiting, 2 closed by the peer, 3 failed. */
  peekIdle(fd: number): number;
}

let loaded: LivenessAddon | null | undefined;

function addon(): LivenessAddon | null {
  if (loaded !== undefined) return loaded;
  const addon = nativeAddon();
  loaded = 'lib' in addon && typeof addon.lib.peekIdle === 'function' ? (addon.lib as unknown as LivenessAddon) : null;
  return loaded;
}

/** Whether `lookAtIdle` can look at a connection here (the addon is built with `peekIdle`). */
export function canLookAtIdle(): boolean {
  return addon() !== null;
}

interface WithHandle {
  _handle?: { fd?: unknown } | null;
  /** A NativeTlsSocket: the TCP socket whose descriptor it reads and writes. */
  raw?: WithHandle;
}

/** The TCP descriptor under `socket` (a plain socket's own, a native TLS socket's underlying one). */
function descriptorOf(socket: Duplex): number | undefined {
  const s = socket as Duplex & WithHandle;
  const fd = (s._handle ?? s.raw?._handle)?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/** A look at an idle connection: one non-blocking `recv(MSG_PEEK)`, nothing consumed. */
export function lookAtIdle(socket: Duplex): IdleLook | undefined {
  if (socket.destroyed || socket.readableEnded) return 'gone';
  const lib = addon();
  const fd = lib ? descriptorOf(socket) : undefined;
  if (fd === undefined) return undefined;
  return lib!.peekIdle(fd) === 0 ? 'quiet' : 'gone';
}
