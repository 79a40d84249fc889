// Sockets that read into regions of their own instead of through Node's Readable buffering.
// The global `Buffer` is an accessor on globalThis: a getter call on every use.
import { Buffer } from 'node:buffer';
import net, { type OnReadOpts, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { guardSocket } from './socket-guard.js';

/**
 * A socket's region starts small and doubles (up to the largest) each time a read fills all the
 * room it had, and halves after a read that used little of it: an idle socket keeps only a small
 * region alive, a socket streaming a large result reads up to 64 KiB at a time.
 */
const SMALLEST_REGION = 2 * 1024;
const LARGEST_REGION = 64 * 1024;
/**
 * The region of a parked socket (one another reader carries, see `parkReading`): room for the
 * few bytes of a peer's close, after which the next read gets a region of the smallest size.
 */
const PARKED_REGION = 64;

/**
 * Reads into a buffer of our own, filled read after read from where the last read ended, instead
 * of a fresh 64 KiB allocation per read, and hands each chunk to `deliver` directly rather than
 * through the Readable's buffering (and its per-read `nextTick`). On a bare relay under callgrind
 * this took a fifth off the proxy's user-space instructions per transaction. A region is never
 * written twice: a chunk, and the frames cut from it, stay valid as long as anyone holds them, as
 * with Node's own buffers.
 */
function ownReadRegions(route: ChunkRoute): OnReadOpts {
  // Views are made from the ArrayBuffer directly: Buffer#subarray reads `.buffer`, a call into C++.
  let size = SMALLEST_REGION;
  let region = new ArrayBuffer(size);
  let used = 0;
  route.park = () => {
    size = SMALLEST_REGION;
    region = new ArrayBuffer(PARKED_REGION);
    used = 0;
    return new Uint8Array(region);
  };
  route.unpark = () => {
    if (region.byteLength !== PARKED_REGION || used !== 0) return undefined;
    region = new ArrayBuffer(size);
    return new Uint8Array(region);
  };
  return {
    buffer: () => {
      const length = region.byteLength;
      if (length - used < length / 4 || length >= size * 2) {
        region = new ArrayBuffer(size);
        used = 0;
      }
      return new Uint8Array(region, used);
    },
    callback: (n) => {
      const room = region.byteLength - used;
      const chunk = Buffer.from(region, used, n);
      used += n;
      if (n === room) size = Math.min(size * 2, LARGEST_REGION);
      else if (n < size / 8) size = Math.max(size / 2, SMALLEST_REGION);
      route.deliver(chunk);
      return true;
    },
  };
}

/**
 * Where a socket reading through `ownReadRegions` sends its chunks: emitted as 'data', or, while
 * `fromSocket` reads it, straight to that reader (EventEmitter#emit costs a megamorphic lookup
 * and an arguments array per chunk).
 */
export class ChunkRoute {
  direct: ((chunk: Buffer) => void) | undefined = undefined;
  /** Set as soon as the socket exists (it is made with the route's reader). */
  socket: Socket | undefined = undefined;
  /** Swaps the socket's region for a small one and returns the view to read into next (set by `ownReadRegions`). */
  park: (() => Uint8Array) | undefined = undefined;
  /** Swaps a parked region nothing was read into for one of the smallest size (undefined: not parked). */
  unpark: (() => Uint8Array | undefined) | undefined = undefined;

  deliver(chunk: Buffer): void {
    const direct = this.direct;
    if (direct !== undefined) direct(chunk);
    else this.socket!.emit('data', chunk);
  }
}

/**
 * A socket's route, kept on the socket itself rather than in a WeakMap keyed by it: V8's young
 * generation collections keep a WeakMap's values alive, so every closed socket (and whatever its
 * route reaches) was promoted to the old generation to wait there for a full collection. Under
 * connection churn that promoted 4.8 KiB a login (1.9 KiB without) and ran 3 mark-compacts in
 * 5 s (1-2 without); the CPU per login did not change measurably.
 */
const ROUTE = Symbol('pgward.chunkRoute');
type Routed = Duplex & { [ROUTE]?: ChunkRoute };

/** The route of a socket made here, for a reader that wants its chunks directly. */
export function chunkRouteOf(socket: Duplex): ChunkRoute | undefined {
  return (socket as Routed)[ROUTE];
}

/**
 * The options of a socket made over a handle Node accepted. Node's Socket constructor copies its
 * options (`{ ...options }`) and then sets allowHalfOpen, emitClose, autoDestroy and decodeStrings
 * on the copy. On Node 20 a property added to such a copy takes V8's slow path every time: ~10 µs
 * a socket on stop 35's machine, 0.35 µs when the options hold the four already (then Node only
 * overwrites them), and under callgrind a sixth of a pooled plain login's instructions. They hold
 * the values Node sets anyway (allowHalfOpen false is its default).
 */
function acceptedSocketOptions(handle: unknown, onread: OnReadOpts): net.SocketConstructorOpts {
  const options = { allowHalfOpen: false, emitClose: false, autoDestroy: true, decodeStrings: false, handle, pauseOnCreate: true, readable: true, writable: true, onread };
  return options as net.SocketConstructorOpts;
}

function withOwnReadRegions(make: (onread: OnReadOpts) => Socket): Socket {
  const route = new ChunkRoute();
  const socket: Socket = guardSocket(make(ownReadRegions(route)));
  route.socket = socket;
  (socket as Routed)[ROUTE] = route;
  return socket;
}

/**
 * `net.connect` for a plain TCP socket that reads through `ownReadRegions`, its chunks emitted as
 * 'data' (every reader here works the same either way). Not for TLS, which reads through its own
 * layer. The socket is returned paused: nothing is read, so nothing is emitted (and neither EOF
 * nor a reset is seen), before a reader resumes it.
 */
export function connectWithOwnReadBuffer(options: Omit<net.TcpNetConnectOpts, 'onread'>): Socket {
  // The four Node sets, first, as for an accepted socket (see acceptedSocketOptions): 0.6 µs a
  // socket against 3.5 when Node adds them to its copy.
  const socket = withOwnReadRegions((onread) =>
    net.connect({ allowHalfOpen: false, emitClose: false, autoDestroy: true, decodeStrings: false, ...options, onread } as net.NetConnectOpts),
  );
  socket.pause();
  return socket;
}

/** The parts of Node's TCP handle (`socket._handle`) that adopting an accepted socket relies on. */
interface StreamHandle {
  readStart(): number;
  readStop(): number;
  useUserBuffer(buffer: Uint8Array): void;
  reading?: boolean;
}

function isIdleStreamHandle(h: unknown): h is StreamHandle {
  const handle = h as Partial<StreamHandle> | null | undefined;
  return (
    typeof handle?.useUserBuffer === 'function' &&
    typeof handle.readStart === 'function' &&
    typeof handle.readStop === 'function' &&
    handle.reading !== true
  );
}

/**
 * The same reading for a socket a `net.Server` accepted (created with `pauseOnConnect`, so nothing
 * has been read yet): `net.Server` has no `onread` option, so the accepted socket's handle is moved
 * into a new `net.Socket` that has one, and the husk is destroyed. This relies on Node's private
 * `_handle`; when it is not there in the expected shape (or reading has already started), the
 * accepted socket is returned as it is, resumed by its readers like any other. Returned paused.
 */
export function adoptWithOwnReadBuffer(accepted: Socket): Socket {
  const husk = accepted as unknown as { _handle: unknown };
  const handle = husk._handle;
  if (accepted.destroyed || !isIdleStreamHandle(handle)) return accepted;
  husk._handle = null;
  accepted.destroy();
  return withOwnReadRegions((onread) => new net.Socket(acceptedSocketOptions(handle, onread)));
}

/** The part of a listening `net.Server`'s handle that `acceptWithOwnReadBuffer` takes over. */
interface ListenHandle {
  onconnection?: (this: unknown, err: number, clientHandle?: unknown) => void;
}

/**
 * Makes a listening `server` (created with `pauseOnConnect`) give `accept` each connection as one
 * socket that reads through `ownReadRegions`, made once over the accepted handle: `net.Server`
 * would build a Socket of its own per connection for `adoptWithOwnReadBuffer` to tear down again.
 * Relies on Node's private `_handle.onconnection`; when it is not there in the expected shape,
 * nothing changes and false is returned (the server's 'connection' listener serves as before).
 * Accept errors, `maxConnections` and a handle of another shape stay with Node's own path.
 * Connections made here are not counted in `server.getConnections()`.
 */
export function acceptWithOwnReadBuffer(server: net.Server, accept: (socket: Socket) => void): boolean {
  const handle = (server as unknown as { _handle?: ListenHandle | null })._handle;
  const nodeOnConnection = handle?.onconnection;
  if (!handle || typeof nodeOnConnection !== 'function') return false;
  const noDelay = (server as unknown as { noDelay?: boolean }).noDelay === true;
  handle.onconnection = function onconnection(this: unknown, err: number, clientHandle?: unknown) {
    if (err || server.maxConnections || !isIdleStreamHandle(clientHandle)) return nodeOnConnection.call(this, err, clientHandle);
    if (noDelay) (clientHandle as { setNoDelay?(on: boolean): void }).setNoDelay?.(true);
    accept(
      withOwnReadRegions((onread) => new net.Socket(acceptedSocketOptions(clientHandle, onread))),
    );
  };
  return true;
}

/** The parts of a socket's read state `parkReading` replaces: its handle, and Node's record of the buffer it reads into. */
type ParkableSocket = Socket & { _handle?: Partial<StreamHandle> | null } & Record<symbol, unknown>;

let nodeBufferSymbol: symbol | null | undefined;

/** Node's private `kBuffer` symbol on a socket read through `onread` (it holds the view read into next). */
function bufferSymbolOf(socket: ParkableSocket): symbol | undefined {
  if (nodeBufferSymbol === undefined) {
    nodeBufferSymbol = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'kBuffer') ?? null;
  }
  return nodeBufferSymbol ?? undefined;
}

/**
 * Gives back a paused socket's read region while another reader carries its descriptor (the
 * native carrier reads a duplicate in C): an idle session would otherwise hold two regions of
 * 2 KiB or more it never reads into. The socket keeps 64 bytes to read its peer's close into, and
 * reads as before once resumed. Relies on Node's private `_handle` and `kBuffer`; when they are
 * not there in the expected shape (or the socket is reading), it does nothing and returns false.
 */
export function parkReading(socket: Duplex): boolean {
  return swapRegion(socket, (route) => route.park?.());
}

/**
 * Gives a parked socket (see `parkReading`) that nothing has read since a region of the smallest
 * size again, for a reader that expects more than a close: the pool's reset of a backend
 * connection, whose answer (a hundred bytes or more) would otherwise take two reads, the first
 * into the 64 parked bytes. False when it is not parked, or not in the expected shape.
 */
export function unparkReading(socket: Duplex): boolean {
  return swapRegion(socket, (route) => route.unpark?.());
}

/** Has a paused socket read into the view `make` gives (undefined: leave it); false when it could not. */
function swapRegion(socket: Duplex, make: (route: ChunkRoute) => Uint8Array | undefined): boolean {
  const route = chunkRouteOf(socket);
  const s = socket as ParkableSocket;
  const handle = s._handle;
  if (!route || s.destroyed || typeof handle?.useUserBuffer !== 'function' || handle.reading === true) return false;
  const symbol = bufferSymbolOf(s);
  if (symbol === undefined || !(s[symbol] instanceof Uint8Array)) return false;
  const view = make(route);
  if (!view) return false;
  handle.useUserBuffer(view);
  s[symbol] = view;
  return true;
}
