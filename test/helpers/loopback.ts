/** Real loopback TCP connections for tests of socket plumbing. */
import net from 'node:net';

export async function listening(options: net.ServerOpts = {}): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer(options);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as net.AddressInfo).port };
}

export async function connected(socket: net.Socket): Promise<void> {
  await new Promise((r) => (socket.connecting ? socket.once('connect', r) : r(undefined)));
}

/** Both ends of a loopback connection, closed together with their server. */
export function pairOf(client: net.Socket, peer: net.Socket, server: net.Server): { client: net.Socket; peer: net.Socket; close: () => void } {
  return {
    client,
    peer,
    close: () => {
      client.destroy();
      peer.destroy();
      server.close();
    },
  };
}

/** A connected pair of real loopback sockets. */
export async function socketPair(): Promise<{ a: net.Socket; b: net.Socket; close: () => void }> {
  const { server, port } = await listening();
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const a = net.connect(port, '127.0.0.1');
  const b = await accepted;
  await connected(a);
  return { a, b, close: pairOf(a, b, server).close };
}
