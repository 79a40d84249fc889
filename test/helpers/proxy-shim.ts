import net from 'node:net';

export type ShimMode = 'separate' | 'coalesced' | 'dribbled';

export interface Shim extends AsyncDisposable {
  port: number;
  /** Per relayed connection: the local port of the shim's socket to pgward (what pgward sees as the peer). */
  peerPorts: number[];
}

/**
 * A stand-in load balancer on 127.0.0.1: each accepted connection is relayed to pgward behind
 * the header `headerFor()` returns. `separate`: the header in a write of its own, then the
 * client's bytes; `coalesced`: header and the client's first bytes in one write; `dribbled`:
 * the header one byte per write (Nagle off, a pause between them).
 */
export async function proxyShim(target: number, headerFor: (i: number) => Buffer, mode: ShimMode = 'separate'): Promise<Shim> {
  const sockets = new Set<net.Socket>();
  const peerPorts: number[] = [];
  let n = 0;
  const server = net.createServer((inbound) => {
    const i = n++;
    inbound.pause();
    const outbound = net.connect({ host: '127.0.0.1', port: target });
    outbound.setNoDelay(true);
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('error', () => {});
      s.once('close', () => {
        sockets.delete(s);
        inbound.destroy();
        outbound.destroy();
      });
    }
    outbound.once('connect', async () => {
      peerPorts[i] = outbound.localPort!;
      const header = headerFor(i);
      outbound.pipe(inbound);
      if (mode === 'coalesced') {
        inbound.once('data', (first: Buffer) => {
          outbound.write(Buffer.concat([header, first]));
          inbound.pipe(outbound);
        });
        inbound.resume();
        return;
      }
      if (mode === 'dribbled') {
        for (const byte of header) {
          if (outbound.destroyed) return;
          outbound.write(Buffer.from([byte]));
          await new Promise((r) => setTimeout(r, 2));
        }
      } else {
        outbound.write(header);
      }
      inbound.pipe(outbound);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    peerPorts,
    async [Symbol.asyncDispose]() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
