import { Duplex } from 'node:stream';
import type net from 'node:net';
import tls from 'node:tls';
import {
  decodeStartupPacket,
  Framer,
  Limits,
  PgError,
  protocolViolation,
  startupPacketRefused,
  TLS_HANDSHAKE_BYTE,
  type StartupPacket,
} from '../protocol/index.js';
import { ConnectionClosed, FrameReader } from '../transport/socket-io.js';
import { guardSocket } from '../transport/socket-guard.js';
import { chunkRouteOf } from '../transport/own-read.js';
import type { NativeTlsContext } from '../transport/native-tls.js';
import { canTakeOver, NativeTlsSocket, stopReading } from '../transport/native-tls-socket.js';

export type StartupMessage = Extract<StartupPacket, { kind: 'StartupMessage' }>;
export type CancelRequest = Extract<StartupPacket, { kind: 'CancelRequest' }>;

export type Negotiated =
  | { kind: 'cancel'; request: CancelRequest }
  | { kind: 'startup'; socket: Duplex; reader: FrameReader; startup: StartupMessage; tls: boolean };

export interface NegotiateOptions {
  /** TLS offered to clients, if configured. */
  secureContext?: tls.SecureContext;
  /** The same certificate for the native TLS layer (`--nativeTls`, when the addon is built): used instead of Node's. */
  nativeTlsContext?: NativeTlsContext;
}

const ALPN = ['postgresql'];

/**
 * The untyped opening of a connection: TLS (by SSLRequest or direct), GSSENC refusal, a cancel,
 * or the StartupMessage. Returns the stream to use from then on (TLS or plain).
 */
export async function negotiate(raw: net.Socket, opts: NegotiateOptions): Promise<Negotiated> {
  let socket: Duplex = raw;
  let secure = false;
  // `raw` may still be reading (see `firstChunk`): this continuation runs before any further read.
  const first = await firstChunk(raw);
  if (first[0] === TLS_HANDSHAKE_BYTE) {
    raw.pause();
    if (!opts.secureContext) throw protocolViolation('direct TLS is not configured on this server');
    socket = opts.nativeTlsContext && canTakeOver(raw)
      ? await startNativeTls(raw, opts.nativeTlsContext, Buffer.concat([first, stopReading(raw)]))
      : await startTls(replayed(raw, first), opts.secureContext, true);
    secure = true;
  }

  let reader = startupReader(socket, secure ? undefined : first);
  for (;;) {
    let frame;
    try {
      frame = await reader.read();
    } catch (err) {
      if (err instanceof PgError && !(err instanceof ConnectionClosed)) throw err;
      // PostgreSQL: a close inside a packet is "incomplete startup packet", logged only
      // (COMMERROR); a close between packets is not worth a word.
      throw reader.framer.buffered > 0 ? startupPacketRefused('incomplete startup packet') : new ConnectionClosed('client');
    }
    const packet = decodeStartupPacket(frame.raw);
    switch (packet.kind) {
      case 'SSLRequest':
      case 'GSSENCRequest': {
        if (secure) throw protocolViolation(`${packet.kind} on an already encrypted connection`);
        // Bytes sent before the handshake would be read as if they came over TLS (CVE-2021-23214).
        if (reader.hasBufferedInput) {
          throw protocolViolation(
            packet.kind === 'SSLRequest'
              ? 'received unencrypted data after SSL request'
              : 'received unencrypted data after GSSAPI encryption request',
          );
        }
        if (packet.kind === 'GSSENCRequest' || !opts.secureContext) {
          socket.write('N');
          continue;
        }
        reader.release();
        if (opts.nativeTlsContext && canTakeOver(raw)) {
          // Node reads no further from here: whatever it read already came before the handshake.
          if (stopReading(raw).length > 0) throw protocolViolation('received unencrypted data after SSL request');
          raw.write('S');
          socket = await startNativeTls(raw, opts.nativeTlsContext);
        } else {
          socket.write('S');
          socket = await startTls(socket, opts.secureContext, false);
        }
        secure = true;
        reader = startupReader(socket);
        continue;
      }
      case 'CancelRequest':
        reader.release();
        return { kind: 'cancel', request: packet };
      case 'StartupMessage':
        // The framer switched to typed messages itself, so a pipelined PasswordMessage is framed right.
        return { kind: 'startup', socket, reader, startup: packet, tls: secure };
    }
  }
}

/** Frames startup packets, then (after a StartupMessage) the authentication exchange. */
function startupReader(socket: Duplex, head?: Buffer): FrameReader {
  const framer = new Framer({ untyped: true, maxLength: Limits.startupPacket, typedMaxLength: Limits.authMessage });
  return new FrameReader(socket, framer, 'client', head);
}

/**
 * The first chunk a client sends. A socket reading into regions of its own (`own-read.ts`) gets
 * one chunk per read callback and is left reading: its next reader, or the TLS branch's pause,
 * comes in this promise's continuation, before any further read. Node stops such a socket at
 * once when paused and libuv registers it anew when it reads again: two `epoll_ctl` per login.
 * Other sockets may hold further chunks in Node's buffer, and are paused as they were.
 */
function firstChunk(socket: net.Socket): Promise<Buffer> {
  const keepReading = chunkRouteOf(socket) !== undefined;
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      cleanup();
      if (!keepReading) socket.pause();
      resolve(chunk);
    };
    const onEnd = () => {
      cleanup();
      // PostgreSQL logs nothing for a connection that sends nothing (monitoring probes do this).
      reject(new ConnectionClosed('client'));
    };
    function cleanup() {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onEnd);
    }
    // `on`, not `once`: each handler removes all three first, and `once` wraps a listener in two objects more.
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onEnd);
    // A 'data' listener does not restart a stream paused on purpose (after a PROXY header).
    socket.resume();
  });
}

/**
 * Direct TLS: the ClientHello was already read to recognise it, so the TLS layer is given a
 * stream that replays it before the rest of the socket.
 */
function replayed(socket: net.Socket, head: Buffer): Duplex {
  const d = guardSocket(new Duplex({
    read() {
      socket.resume();
    },
    write(chunk, _enc, cb) {
      socket.write(chunk, cb);
    },
    final(cb) {
      socket.end();
      cb();
    },
    destroy(err, cb) {
      socket.destroy(err ?? undefined);
      cb(err);
    },
  }));
  d.push(head);
  socket.on('data', (chunk: Buffer) => {
    if (!d.push(chunk)) socket.pause();
  });
  socket.on('end', () => d.push(null));
  socket.on('error', (err) => d.destroy(err));
  socket.on('close', () => d.destroy());
  return d;
}

/** The server side of the handshake on the native TLS layer; `prefix` (the ClientHello read already) for direct TLS. */
async function startNativeTls(raw: net.Socket, context: NativeTlsContext, prefix?: Buffer): Promise<NativeTlsSocket> {
  const t = guardSocket(new NativeTlsSocket(raw, context, { server: true, prefix }));
  try {
    await t.handshake();
  } catch (err) {
    t.destroy();
    throw protocolViolation(`TLS handshake failed: ${(err as Error).message}`);
  }
  if (prefix && t.alpnProtocol !== 'postgresql') {
    t.destroy();
    throw protocolViolation('direct TLS connection without ALPN "postgresql"');
  }
  return t;
}

function startTls(socket: Duplex, secureContext: tls.SecureContext, direct: boolean): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const t = guardSocket(new tls.TLSSocket(socket, { isServer: true, secureContext, ALPNProtocols: ALPN }));
    const onError = (err: Error) => {
      cleanup();
      t.destroy();
      reject(protocolViolation(`TLS handshake failed: ${err.message}`));
    };
    const onSecure = () => {
      cleanup();
      // PostgreSQL 17 requires ALPN on direct TLS so that other protocols cannot be confused with it.
      if (direct && t.alpnProtocol !== 'postgresql') {
        t.destroy();
        return reject(protocolViolation('direct TLS connection without ALPN "postgresql"'));
      }
      resolve(t);
    };
    function cleanup() {
      t.off('error', onError);
      t.off('secure', onSecure);
    }
    t.once('error', onError);
    t.once('secure', onSecure);
  });
}
