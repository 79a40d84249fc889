// A plain backend connection the pool keeps moves onto a native endpoint without TLS
// (native/tls.h, tls_plain_conn_new), once, the first time it is kept: from then on the native
// carrier borrows that endpoint with its poll handle kept, session after session, as it does a TLS
// backend's. Carried as a Node socket, each session cost a duplicate descriptor, a libuv poll
// handle made and closed over it (a probe of the descriptor, a FIONBIO, a close) and six epoll_ctl,
// besides the two Node's own watcher added and dropped around the reset's read.
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { chunkRouteOf } from '../transport/own-read.js';
import { plainEndpointSocket } from '../transport/native-tls-socket.js';

let enabled = false;

/** Whether kept plain connections move onto native endpoints (on with the native carrier: `--nativeRelay`, at start and reload). */
export function useNativePlainBackends(on: boolean): void {
  enabled = on;
}

/**
 * `socket` on a native endpoint, or undefined to keep it as it is: the switch is off, the addon
 * lacks such endpoints, or it is no plain socket of Node's reading through own-read.ts (only those
 * have a chunk route: not TLS, not a test's stream, not one already moved).
 */
export function onNativeEndpoint(socket: Duplex): Duplex | undefined {
  return enabled && chunkRouteOf(socket) !== undefined ? plainEndpointSocket(socket as Socket) : undefined;
}
