import type { Duplex } from 'node:stream';

const guarded = new WeakSet<Duplex>();

/**
 * Gives a socket an 'error' listener for its whole life. An EventEmitter throws an 'error' that
 * nobody listens to, so a reset that arrives after every phase has removed its own listeners —
 * a backend terminated just after its session ended, a client gone during the close grace
 * period — would otherwise end the process and every other session with it. Each phase still
 * listens for the errors it cares about and removes its listeners when done; this one stays, and
 * the 'close' that follows every error is what the phases see. Every socket pgward creates or
 * accepts goes through here where it is made. Returns the socket.
 */
export function guardSocket<S extends Duplex>(socket: S): S {
  if (!guarded.has(socket)) {
    guarded.add(socket);
    socket.on('error', ignore);
  }
  return socket;
}

/** Whether `guardSocket` has seen this socket (for tests of the places that make sockets). */
export function isGuarded(socket: Duplex): boolean {
  return guarded.has(socket);
}

function ignore(): void {}
