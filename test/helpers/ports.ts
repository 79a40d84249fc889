import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * The ports `freePort` picks from: below the kernel's ephemeral range, so none of them is ever
 * given to an outgoing connection's local end. Tests run two at a time and some open thousands of
 * connections a second; a port the kernel picked (port 0) comes from that same range, and one was
 * once taken by another test's connection in the moments before a spawned demo bound it.
 * Undefined where the range cannot be read or leaves too little room: then the kernel picks.
 */
const PICK_FROM = ((): { low: number; high: number } | undefined => {
  try {
    const [first] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    return first !== undefined && first > 12_000 ? { low: 10_000, high: first - 1 } : undefined;
  } catch {
    return undefined;
  }
})();

/** Ports this process has handed out: two callers in one process never get the same one. */
const handedOut = new Set<number>();

/**
 * Returns a TCP port on 127.0.0.1 that was free a moment ago: a random one below the ephemeral
 * range (see PICK_FROM) that binds, or else one the kernel picks (port 0). Another process could
 * still take it before the caller binds; tests bind right away.
 */
export async function freePort(): Promise<number> {
  if (PICK_FROM) {
    for (let attempt = 0; attempt < 50; attempt++) {
      const port = PICK_FROM.low + Math.floor(Math.random() * (PICK_FROM.high - PICK_FROM.low + 1));
      if (handedOut.has(port)) continue;
      handedOut.add(port); // before the await: a concurrent caller skips it meanwhile
      if ((await bindAndRelease(port).catch(() => undefined)) === port) return port;
      handedOut.delete(port);
    }
  }
  return bindAndRelease(0);
}

/** Binds `port` (0: the kernel picks one) on 127.0.0.1, releases it, and returns the port bound. */
function bindAndRelease(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('freePort: listening socket has no TCP address'));
        return;
      }
      const bound = address.port;
      server.close((err) => (err ? reject(err) : resolve(bound)));
    });
  });
}
