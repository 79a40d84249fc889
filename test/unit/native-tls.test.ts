import assert from 'node:assert/strict';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import v8 from 'node:v8';
import vm from 'node:vm';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { liveNativeTlsEndpoints, nativeTlsAddon, NativeTlsContext, nativeTlsAvailability } from '../../src/transport/native-tls.js';
import { stopReading } from '../../src/transport/native-tls-socket.js';
import { TestCA } from '../helpers/certs.js';
import { collect, nativeServer, readBytes, splitRelay } from '../helpers/tls-peers.js';
import { until } from '../helpers/wait.js';

/**
 * The native TLS layer's server side over real loopback sockets, with Node's own TLS client as
 * the peer: handshake, versions, ALPN, transfers with backpressure both ways, close_notify,
 * garbage, and TLS records cut at every byte.
 */
describe('native TLS endpoints (server side)', () => {
  let ca: TestCA;
  let caPem: Buffer;
  let certDer: Buffer;
  let context: NativeTlsContext;

  before(async () => {
    ca = await TestCA.create();
    caPem = readFileSync(ca.cert);
    const server = await ca.issue('server', { cn: 'localhost' });
    certDer = new X509Certificate(readFileSync(server.cert)).raw;
    context = NativeTlsContext.server(readFileSync(server.cert), readFileSync(server.key));
  });

  after(async () => {
    await ca?.[Symbol.asyncDispose]();
  });

  const nodeClient = (port: number, opts: tls.ConnectionOptions = {}) => {
    const c = tls.connect({ host: '127.0.0.1', port, ca: caPem, servername: 'localhost', ALPNProtocols: ['postgresql'], ...opts });
    c.on('error', () => {});
    return c;
  };
  const secured = (c: tls.TLSSocket) =>
    new Promise<void>((resolve, reject) => {
      c.once('secureConnect', resolve);
      c.once('error', reject);
    });

  it('is built here, with the OpenSSL Node has', () => {
    assert.deepEqual(nativeTlsAvailability(), { available: true });
    assert.match(process.versions.openssl, /^3\./);
  });

  it('handshakes TLS 1.3 with ALPN "postgresql", says version and cipher, and echoes both ways', async () => {
    await using server = await nativeServer(context);
    const client = nodeClient(server.port);
    const endpoint = await server.next();
    await Promise.all([secured(client), endpoint.handshake()]);
    assert.equal(endpoint.getProtocol(), 'TLSv1.3');
    assert.equal(endpoint.getCipher().name, client.getCipher().name);
    assert.equal(endpoint.alpnProtocol, 'postgresql');
    assert.equal(endpoint.encrypted, true);
    endpoint.on('data', (d: Buffer) => endpoint.write(Buffer.concat([Buffer.from('echo:'), d])));
    client.write('hello');
    assert.equal((await readBytes(client, 10)).toString(), 'echo:hello');
    client.destroy();
  });

  it('speaks TLS 1.2 to a client that offers no more, and refuses TLS 1.1', async () => {
    await using server = await nativeServer(context);
    const v12 = nodeClient(server.port, { maxVersion: 'TLSv1.2', ALPNProtocols: undefined });
    const e12 = await server.next();
    await Promise.all([secured(v12), e12.handshake()]);
    assert.equal(e12.getProtocol(), 'TLSv1.2');
    assert.equal(e12.alpnProtocol, false, 'no ALPN offered, none chosen');
    v12.destroy();

    const v11 = nodeClient(server.port, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' });
    const e11 = await server.next();
    await assert.rejects(e11.handshake(), /unsupported protocol/);
    await assert.rejects(secured(v11), /protocol version/);
  });

  it('refuses a client whose ALPN offer lacks "postgresql" (no_application_protocol)', async () => {
    await using server = await nativeServer(context);
    const client = nodeClient(server.port, { ALPNProtocols: ['http/1.1'] });
    const endpoint = await server.next();
    await assert.rejects(endpoint.handshake(), /no application protocol/);
    await assert.rejects(secured(client), /no application protocol/);
  });

  it('closes on garbage instead of a ClientHello, saying why', async () => {
    await using server = await nativeServer(context);
    const raw = net.connect(server.port, '127.0.0.1');
    raw.write('GET / HTTP/1.1\r\nHost: db\r\n\r\n');
    const answered = collect(raw);
    const endpoint = await server.next();
    await assert.rejects(endpoint.handshake(), /http request/);
    assert.equal((await answered).length, 0, 'no TLS record and no plaintext goes back');
  });

  it('replays a ClientHello read before the endpoint existed (direct TLS)', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
      const client = nodeClient((server.address() as net.AddressInfo).port);
      const raw = await accepted;
      const first = await new Promise<Buffer>((r) => raw.once('data', r));
      const prefix = Buffer.concat([first, stopReading(raw)]);
      const { NativeTlsSocket } = await import('../../src/transport/native-tls-socket.js');
      const endpoint = new NativeTlsSocket(raw, context, { server: true, prefix });
      await Promise.all([secured(client), endpoint.handshake()]);
      endpoint.write('direct');
      assert.equal((await readBytes(client, 6)).toString(), 'direct');
      client.destroy();
      endpoint.destroy();
    } finally {
      server.close();
    }
  });

  it('stops Node reading a socket at once, handing over what it read and nobody took', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
      const peer = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
      const socket = await accepted;
      // Paused, but Node goes on reading into the stream's buffer.
      socket.pause();
      peer.write('before');
      await until(() => socket.readableLength === 6, 3000, 'Node to buffer what came');
      assert.equal(stopReading(socket).toString(), 'before');
      peer.write('after');
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(socket.readableLength, 0, 'nothing more was read');
      assert.equal(stopReading(socket).length, 0);
      peer.destroy();
      socket.destroy();
    } finally {
      server.close();
    }
  });

  it('moves 8 MiB each way through a slow reader: writes queue in C, drain, and nothing is lost', async () => {
    await using server = await nativeServer(context);
    const client = nodeClient(server.port);
    const endpoint = await server.next();
    await Promise.all([secured(client), endpoint.handshake()]);
    const up = randomBytes(8 << 20);
    const down = randomBytes(8 << 20);
    const atServer = readBytes(endpoint, up.length);
    client.write(up);
    let sawBackpressure = false;
    // The client reads nothing for a while: the endpoint's writes must wait for the socket.
    client.pause();
    for (let off = 0; off < down.length; off += 64 * 1024) {
      if (!endpoint.write(down.subarray(off, off + 64 * 1024))) sawBackpressure = true;
    }
    setTimeout(() => client.resume(), 200);
    const atClient = await readBytes(client, down.length);
    assert.ok(sawBackpressure, 'the endpoint pushed back while the client did not read');
    assert.equal(sha(atClient.subarray(0, down.length)), sha(down));
    assert.equal(sha((await atServer).subarray(0, up.length)), sha(up));
    client.destroy();
  });

  it('ends with close_notify both ways: each side sees an orderly end', async () => {
    await using server = await nativeServer(context);
    const client = nodeClient(server.port);
    const endpoint = await server.next();
    await Promise.all([secured(client), endpoint.handshake()]);
    const clientEnd = new Promise((r) => client.once('end', r));
    endpoint.end('bye');
    assert.equal((await readBytes(client, 3)).toString(), 'bye');
    await clientEnd;
    const endpointClosed = new Promise((r) => endpoint.once('close', r));
    // Like the sockets of own-read.ts, an endpoint reads (and so sees EOF) only while someone reads it.
    endpoint.resume();
    client.end();
    await endpointClosed;
    assert.equal(endpoint.destroyed, true);
  });

  it('gives the peer certificate as DER for tls-server-end-point (here: our own, seen from a native client)', async () => {
    const { NativeTlsSocket } = await import('../../src/transport/native-tls-socket.js');
    await using server = await nativeServer(context);
    const raw = net.connect(server.port, '127.0.0.1');
    await new Promise((r) => raw.once('connect', r));
    const client = new NativeTlsSocket(raw, NativeTlsContext.client({ roots: caPem }), { server: false, servername: 'localhost', verifyHost: 'localhost' });
    client.on('error', () => {});
    await Promise.all([client.handshake(), (await server.next()).handshake()]);
    assert.deepEqual(client.getPeerX509Certificate()?.raw, certDer);
    client.destroy();
  });

  it('carries plaintext intact whatever the TLS records are cut into (records split at every byte)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.integer({ min: 1, max: 40_000 }), { minLength: 1, maxLength: 4 }),
        async (pieces, messageSizes) => {
          await using server = await nativeServer(context);
          await using relay = await splitRelay(server.port, pieces);
          const client = nodeClient(relay.port);
          const endpoint = await server.next();
          await Promise.all([secured(client), endpoint.handshake()]);
          endpoint.pipe(endpoint);
          const sent = Buffer.concat(messageSizes.map((n) => randomBytes(n)));
          const back = readBytes(client, sent.length);
          for (let off = 0, i = 0; off < sent.length; off += messageSizes[i++ % messageSizes.length]!) {
            client.write(sent.subarray(off, off + messageSizes[i % messageSizes.length]!));
          }
          assert.equal(sha((await back).subarray(0, sent.length)), sha(sent));
          client.destroy();
        },
      ),
      { numRuns: 12 },
    );
  });

  it('survives a whole session with every byte of ciphertext in a write of its own', async () => {
    await using server = await nativeServer(context);
    await using relay = await splitRelay(server.port, [1]);
    const client = nodeClient(relay.port);
    const endpoint = await server.next();
    await Promise.all([secured(client), endpoint.handshake()]);
    endpoint.pipe(endpoint);
    const sent = randomBytes(3000);
    const back = readBytes(client, sent.length);
    client.write(sent);
    assert.deepEqual((await back).subarray(0, sent.length), sent);
    assert.ok(relay.forwarded.toServer > sent.length && relay.forwarded.toClient > sent.length, 'everything went byte by byte through the relay');
    client.destroy();
  });

  it('lends an open endpoint to native code and takes it back (the contract the carrier adopts)', async () => {
    const lib = nativeTlsAddon()!;
    await using server = await nativeServer(context);
    const client = nodeClient(server.port);
    const endpoint = await server.next();
    await Promise.all([secured(client), endpoint.handshake()]);
    const seenByJs: string[] = [];
    endpoint.on('data', (d: Buffer) => seenByJs.push(d.toString()));
    assert.equal(lib.lend({}), undefined, 'only an endpoint handle can be lent');
    const loan = lib.lend(endpoint.nativeHandle!)!;
    assert.ok(loan, 'an open endpoint with nothing queued is lent');
    assert.equal(lib.lend(endpoint.nativeHandle!), undefined, 'not twice');
    assert.equal(lib.loanEvents(loan, true, false), 1 /* UV_READABLE */);
    assert.equal(lib.loanEvents(loan, true, true), 3 /* UV_READABLE | UV_WRITABLE */);

    // While lent the borrower reads and writes; JavaScript sees nothing.
    client.write('to the borrower');
    let got: Buffer | number = -1;
    await until(() => (got = lib.loanRead(loan)) instanceof Buffer, 3000, 'the borrower to read');
    assert.equal(String(got), 'to the borrower');
    assert.equal(lib.loanRead(loan), -1, 'TLS_AGAIN: nothing more yet');
    assert.equal(lib.loanWrite(loan, Buffer.from('from the borrower')), 17);
    assert.equal((await readBytes(client, 17)).toString(), 'from the borrower');
    assert.deepEqual(seenByJs, []);

    // Given back, the endpoint reads and writes for JavaScript again.
    lib.giveBack(loan);
    assert.throws(() => lib.loanRead(loan), /not given back/);
    client.write('to JavaScript');
    await until(() => seenByJs.join('') === 'to JavaScript', 3000, 'JavaScript to read again');
    endpoint.write('from JavaScript');
    assert.equal((await readBytes(client, 15)).toString(), 'from JavaScript');

    // Destroyed while lent, it closes only when given back.
    const again = lib.lend(endpoint.nativeHandle!)!;
    const clientClosed = new Promise((r) => client.once('close', r));
    endpoint.destroy();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(client.destroyed, false, 'the borrower still holds the connection');
    assert.equal(lib.loanWrite(again, Buffer.from('last words')), 10);
    assert.equal((await readBytes(client, 10)).toString(), 'last words');
    lib.giveBack(again);
    await clientClosed;
  });

  it('frees every endpoint once closed and collected', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    await until(() => (gc(), liveNativeTlsEndpoints() === 0), 5000, 'the earlier endpoints to be freed');
    await using server = await nativeServer(context);
    for (let i = 0; i < 5; i++) {
      const client = nodeClient(server.port);
      const endpoint = await server.next();
      await Promise.all([secured(client), endpoint.handshake()]);
      endpoint.resume();
      if (i % 2 === 0) client.destroy();
      else endpoint.destroy();
      await new Promise((r) => endpoint.once('close', r));
    }
    await until(() => (gc(), liveNativeTlsEndpoints() === 0), 5000, 'the closed endpoints to be freed');
  });
});

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}
