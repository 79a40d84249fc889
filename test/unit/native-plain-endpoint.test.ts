import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import { describe, it } from 'node:test';
import { liveNativeTlsEndpoints, nativeTlsAddon } from '../../src/transport/native-tls.js';
import { NativeTlsSocket, plainEndpointSocket } from '../../src/transport/native-tls-socket.js';
import { isGuarded } from '../../src/transport/socket-guard.js';
import { describeTls } from '../../src/transport/tls-info.js';
import { collect, readBytes } from '../helpers/tls-peers.js';
import { until } from '../helpers/wait.js';

/**
 * A plain TCP socket on a native endpoint without TLS (native/tls.h, tls_plain_conn_new), over
 * real loopback sockets with a Node socket as the peer: what the pool moves its kept plain
 * backend connections onto, so that the carrier borrows them as it does TLS ones.
 */
describe('native plain endpoints', () => {
  /** A connected pair: `ours` (the side to move onto an endpoint) and Node's `peer`. */
  async function pair(): Promise<{ ours: net.Socket; peer: net.Socket } & AsyncDisposable> {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    const peer = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    peer.on('error', () => {});
    const ours = await accepted;
    await new Promise((r) => (peer.connecting ? peer.once('connect', r) : r(undefined)));
    return {
      ours,
      peer,
      [Symbol.asyncDispose]: async () => {
        peer.destroy();
        ours.destroy();
        await new Promise((r) => server.close(r));
      },
    };
  }

  it('is open at once, says it is not TLS, is guarded, and echoes both ways', async () => {
    await using p = await pair();
    const endpoint = plainEndpointSocket(p.ours)!;
    assert.ok(endpoint instanceof NativeTlsSocket);
    assert.equal(endpoint.encrypted, false);
    assert.equal(endpoint.getProtocol(), null);
    assert.equal(describeTls(endpoint), undefined, 'no TLS to describe');
    assert.equal(endpoint.getPeerX509Certificate(), undefined);
    assert.ok(isGuarded(endpoint), 'an error listener for its whole life');
    assert.ok(endpoint.nativeHandle, 'lendable from the start: no handshake');
    await endpoint.handshake();
    endpoint.on('data', (d: Buffer) => endpoint.write(Buffer.concat([Buffer.from('echo:'), d])));
    p.peer.write('hello');
    assert.equal((await readBytes(p.peer, 10)).toString(), 'echo:hello');
  });

  it('takes nothing over that it cannot: a destroyed socket, one with bytes unread, one already taken', async () => {
    await using p = await pair();
    p.ours.pause();
    p.peer.write('early');
    await until(() => (p.ours.read(0), p.ours.readableLength > 0), 3000, 'Node to buffer the bytes');
    assert.equal(plainEndpointSocket(p.ours), undefined, 'bytes Node holds would be lost');
    await using q = await pair();
    q.ours.destroy();
    assert.equal(plainEndpointSocket(q.ours), undefined);
  });

  it('moves 8 MiB each way through a slow reader: writes queue in C, drain, and nothing is lost', async () => {
    await using p = await pair();
    const endpoint = plainEndpointSocket(p.ours)!;
    const size = 8 * 1024 * 1024;
    const toPeer = randomBytes(size);
    const fromPeer = randomBytes(size);
    const peerGot = readBytes(p.peer, size);
    const endpointGot = readBytes(endpoint, size);
    let drains = 0;
    endpoint.on('drain', () => drains++);
    for (let i = 0; i < size; i += 64 * 1024) endpoint.write(toPeer.subarray(i, i + 64 * 1024));
    for (let i = 0; i < size; i += 64 * 1024) p.peer.write(fromPeer.subarray(i, i + 64 * 1024));
    assert.equal(sha(await peerGot), sha(toPeer));
    assert.equal(sha(await endpointGot), sha(fromPeer));
    assert.ok(drains > 0, 'the writer was held back and let go');
  });

  it("ends with a FIN each way, and a peer's reset ends it with an error no one has to catch", async () => {
    await using p = await pair();
    const endpoint = plainEndpointSocket(p.ours)!;
    const peerSaw = collect(p.peer);
    endpoint.end('bye');
    assert.equal((await peerSaw).toString(), 'bye', 'the peer reads to its EOF');

    await using o = await pair();
    const other = plainEndpointSocket(o.ours)!;
    const endpointSaw = collect(other);
    o.peer.end('and you');
    assert.equal((await endpointSaw).toString(), 'and you', 'the endpoint reads to its EOF');

    await using q = await pair();
    const reset = plainEndpointSocket(q.ours)!;
    reset.resume();
    const errors: string[] = [];
    reset.on('error', (e: Error) => errors.push(e.message));
    const closed = new Promise((r) => reset.once('close', r));
    q.peer.resetAndDestroy();
    await closed;
    assert.deepEqual(errors, ['Connection reset by peer'], "the socket's own error, not libuv's POLLERR as EBADF");
    assert.equal(q.ours.destroyed, true, "Node's socket underneath goes with it");
  });

  it('fails a write still queued when it is destroyed, saying the connection closed (not a TLS one)', async () => {
    await using p = await pair();
    const endpoint = plainEndpointSocket(p.ours)!;
    p.peer.pause();
    // More than the socket buffers take while the peer reads nothing: the rest waits in C.
    const written = new Promise<Error | null | undefined>((resolve) => endpoint.write(randomBytes(16 << 20), resolve));
    await until(() => endpoint.writableNeedDrain, 3000, 'the write to wait');
    endpoint.destroy();
    const err = await written;
    assert.ok(err instanceof Error, 'the queued write failed');
    assert.match(err.message, /^the connection closed$/);
  });

  it('is lent to native code and taken back, its poll kept (the contract the carrier adopts)', async () => {
    const lib = nativeTlsAddon()!;
    await using p = await pair();
    const endpoint = plainEndpointSocket(p.ours)!;
    const seenByJs: string[] = [];
    endpoint.on('data', (d: Buffer) => seenByJs.push(d.toString()));
    const loan = lib.lend(endpoint.nativeHandle!)!;
    assert.ok(loan);
    assert.equal(lib.loanEvents(loan, true, false), 1 /* UV_READABLE */);
    assert.equal(lib.loanEvents(loan, false, true), 2 /* UV_WRITABLE */);
    p.peer.write('to the borrower');
    let got: Buffer | number = -1;
    await until(() => (got = lib.loanRead(loan)) instanceof Buffer, 3000, 'the borrower to read');
    assert.equal(String(got), 'to the borrower');
    assert.equal(lib.loanRead(loan), -1, 'AGAIN: nothing more yet');
    assert.equal(lib.loanWrite(loan, Buffer.from('from the borrower')), 17);
    assert.equal((await readBytes(p.peer, 17)).toString(), 'from the borrower');
    assert.deepEqual(seenByJs, []);
    lib.giveBack(loan);
    p.peer.write('to JavaScript');
    await until(() => seenByJs.join('') === 'to JavaScript', 3000, 'JavaScript to read again');
  });

  it('frees every endpoint once closed and collected', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    await until(() => (gc(), liveNativeTlsEndpoints() === 0), 5000, 'the earlier endpoints to be freed');
    for (let i = 0; i < 5; i++) {
      await using p = await pair();
      const endpoint = plainEndpointSocket(p.ours)!;
      endpoint.resume();
      if (i % 2 === 0) p.peer.destroy();
      else endpoint.destroy();
      await new Promise((r) => endpoint.once('close', r));
    }
    await until(() => (gc(), liveNativeTlsEndpoints() === 0), 5000, 'the closed endpoints to be freed');
  });
});

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}
