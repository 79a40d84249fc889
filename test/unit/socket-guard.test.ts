import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { adoptWithOwnReadBuffer, connectWithOwnReadBuffer } from '../../src/transport/own-read.js';
import { guardSocket, isGuarded } from '../../src/transport/socket-guard.js';
import { dialTcp } from '../../src/backend/dial.js';
import { parseBackendUrl } from '../../src/backend/url.js';

/** A reset from the peer after every reader has stopped listening: the moment that used to crash. */
async function resetAfterListenersAreGone(socket: net.Socket, peer: Promise<net.Socket>): Promise<void> {
  const closed = new Promise((r) => socket.once('close', r));
  socket.resume();
  (await peer).resetAndDestroy();
  await closed;
}

async function listening(): Promise<{ server: net.Server; port: number; accepted: Promise<net.Socket> }> {
  const server = net.createServer({ pauseOnConnect: true });
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as net.AddressInfo).port, accepted };
}

describe('guardSocket', () => {
  it('keeps an unlistened socket error from being thrown, once per socket', () => {
    const s = new net.Socket();
    assert.throws(() => s.emit('error', new Error('reset')), /reset/, 'without a listener, EventEmitter throws');
    guardSocket(s);
    guardSocket(s);
    assert.equal(s.listenerCount('error'), 1);
    assert.doesNotThrow(() => s.emit('error', new Error('reset')));
    assert.ok(isGuarded(s));
    s.destroy();
  });

  it('is on every socket made to read into its own regions, dialed or accepted', async () => {
    const { server, port, accepted } = await listening();
    try {
      const dialed = connectWithOwnReadBuffer({ host: '127.0.0.1', port });
      assert.ok(isGuarded(dialed));
      await new Promise((r) => dialed.once('connect', r));
      const adopted = adoptWithOwnReadBuffer(await accepted);
      assert.ok(isGuarded(adopted));
      await resetAfterListenersAreGone(dialed, Promise.resolve(adopted));
    } finally {
      server.close();
    }
  });

  it('is on backend sockets, TLS-bound or not, for their whole life', async () => {
    for (const sslmode of ['disable', 'require']) {
      const { server, port, accepted } = await listening();
      try {
        const target = parseBackendUrl(`postgres://u@127.0.0.1:${port}/d?sslmode=${sslmode}`);
        const socket = await dialTcp(target, undefined, sslmode === 'disable');
        assert.ok(isGuarded(socket), `sslmode=${sslmode}`);
        assert.equal(socket.listenerCount('error'), 1, 'only the guard listens once dialing is done');
        await resetAfterListenersAreGone(socket, accepted);
      } finally {
        server.close();
      }
    }
  });
});
