/** A carrier, native or JavaScript, between two real loopback connections, for the carrier's tests. */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { Carrier, CarrierEnd, CarrierOptions } from '../../src/pipeline/carrier.js';
import { JsCarrier } from '../../src/pipeline/js-carrier.js';
import { NativeCarrier } from '../../src/pipeline/native-carrier.js';
import { connectWithOwnReadBuffer } from '../../src/transport/own-read.js';
import { MessageWants } from '../../src/pipeline/wants.js';
import { fe, Framer, type BackendMessage, type FrontendMessage } from '../../src/protocol/index.js';
import { listening } from './loopback.js';

export interface Options {
  kind?: 'native' | 'js';
  wants?: MessageWants;
  maxMessageSize?: number;
  keepBackend?: boolean;
  /** Frames the login read ahead from the client, and bytes of a frame begun (fed to the client's framer). */
  leftover?: Buffer[];
  partial?: Buffer;
  /** What to do with a message handed up (default: write it on, as an empty pipeline would). */
  onClient?: (m: FrontendMessage, carrier: Carrier) => void;
  onBackend?: (m: BackendMessage, carrier: Carrier) => void;
  /** Told of a message only observed (already forwarded). */
  onObservedClient?: (m: FrontendMessage, carrier: Carrier) => void;
  onObservedBackend?: (m: BackendMessage, carrier: Carrier) => void;
}

/** A plain TCP socket as the proxy holds one (reading into regions of its own), and its far end. */
export async function connection(server: net.Server, port: number): Promise<{ socket: net.Socket; peer: net.Socket }> {
  const peer = new Promise<net.Socket>((r) => server.once('connection', r));
  const socket = connectWithOwnReadBuffer({ host: '127.0.0.1', port });
  await new Promise((r) => socket.once('connect', r));
  return { socket, peer: await peer };
}

/**
 * A carrier (native by default) between two real loopback connections: `client.peer` and
 * `backend.peer` are the far ends a test writes and reads.
 */
export async function carriedBy(opts: Options, existingBackend?: { socket: net.Socket; peer: net.Socket }) {
  const { server, port } = await listening();
  const c = await connection(server, port);
  const b = existingBackend ?? (await connection(server, port));
  const atBackend: Buffer[] = [];
  const atClient: Buffer[] = [];
  const onBackendData = (d: Buffer) => atBackend.push(d);
  const onClientData = (d: Buffer) => atClient.push(d);
  b.peer.on('data', onBackendData);
  c.peer.on('data', onClientData);
  const delivered: string[] = [];
  const ends: CarrierEnd[] = [];
  let idles = 0;
  let carrier: Carrier;
  const options: CarrierOptions = {
    wants: opts.wants ?? new MessageWants(),
    maxMessageSize: opts.maxMessageSize ?? 64 * 1024 * 1024,
    keepBackend: opts.keepBackend,
    events: {
      fromClient: (m) => {
        delivered.push(`client:${m.type}`);
        if (opts.onClient) opts.onClient(m, carrier);
        else carrier.toBackend(m);
      },
      fromBackend: (m) => {
        delivered.push(`backend:${m.type}`);
        if (opts.onBackend) opts.onBackend(m, carrier);
        else carrier.toClient(m);
      },
      observedFromClient: (m) => {
        delivered.push(`client-observed:${m.type}`);
        opts.onObservedClient?.(m, carrier);
      },
      observedFromBackend: (m) => {
        delivered.push(`backend-observed:${m.type}`);
        opts.onObservedBackend?.(m, carrier);
      },
      countedFromClient: (code, n) => void delivered.push(...Array<string>(n).fill(`client-counted:${String.fromCharCode(code)}`)),
      countedFromBackend: (code, n) => void delivered.push(...Array<string>(n).fill(`backend-counted:${String.fromCharCode(code)}`)),
      idle: () => idles++,
      ended: (e) => ends.push(e),
    },
  };
  const clientFramer = new Framer();
  if (opts.partial) clientFramer.push(opts.partial, () => assert.fail('a part of a frame only'));
  const leftover = (opts.leftover ?? []).map((raw) => ({ code: raw[0]!, raw }));
  const endpoints = [{ socket: c.socket, framer: clientFramer, leftover }, { socket: b.socket, framer: new Framer() }] as const;
  if (opts.kind === 'js') carrier = new JsCarrier(...endpoints, options);
  else {
    const native = NativeCarrier.open(...endpoints, options);
    assert.ok(native, 'the native carrier takes plain TCP sockets');
    carrier = native;
  }
  carrier.start();
  return {
    carrier,
    client: c,
    backend: b,
    atBackend: () => Buffer.concat(atBackend),
    atClient: () => Buffer.concat(atClient),
    delivered,
    ends,
    idles: () => idles,
    close: () => {
      for (const s of [c.socket, c.peer]) s.destroy();
      if (!existingBackend) for (const s of [b.socket, b.peer]) s.destroy();
      b.peer.off('data', onBackendData);
      server.close();
    },
  };
}

/** Writes `bytes` in pieces of `size` (1: a byte per TCP segment), waiting a moment between pieces. */
export async function trickle(socket: net.Socket, bytes: Buffer, size = 1): Promise<void> {
  for (let i = 0; i < bytes.length; i += size) {
    socket.write(bytes.subarray(i, i + size));
    await new Promise((r) => setTimeout(r, 2));
  }
}

export const frontendTraffic = () =>
  Buffer.concat(
    [
      fe.parse({ name: 's1', sql: 'select $1::int', paramTypes: [23] }),
      fe.bind({ portal: '', statement: 's1', paramFormats: [], params: [Buffer.from('7')], resultFormats: [] }),
      fe.execute('', 0),
      fe.sync(),
      fe.query('select 1'),
    ].map((m) => m.raw),
  );
