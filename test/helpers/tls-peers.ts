// Real loopback peers for the native TLS layer's tests: a server whose accepted sockets become
// native TLS endpoints, a native client, and a relay that cuts a byte stream into given pieces.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import tls from 'node:tls';
import { encodeCancelRequest, encodeSSLRequest } from '../../src/protocol/index.js';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { NativeTlsContext } from '../../src/transport/native-tls.js';
import { NativeTlsSocket, type NativeTlsOptions } from '../../src/transport/native-tls-socket.js';
import { TestCA, type CertPaths } from './certs.js';
import { PgCluster } from './pg-cluster.js';

const execFileAsync = promisify(execFile);

export interface NativeServer extends AsyncDisposable {
  port: number;
  /** The next accepted connection, as a native TLS endpoint (handshake started, not awaited). */
  next(): Promise<NativeTlsSocket>;
}

export async function nativeServer(context: NativeTlsContext, opts: Omit<NativeTlsOptions, 'server'> = {}): Promise<NativeServer> {
  const accepted: NativeTlsSocket[] = [];
  const waiting: Array<(s: NativeTlsSocket) => void> = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((raw) => {
    sockets.add(raw);
    raw.once('close', () => sockets.delete(raw));
    const t = new NativeTlsSocket(raw, context, { ...opts, server: true });
    t.on('error', () => {});
    const w = waiting.shift();
    if (w) w(t);
    else accepted.push(t);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    next: () => {
      const t = accepted.shift();
      return t ? Promise.resolve(t) : new Promise((r) => waiting.push(r));
    },
    async [Symbol.asyncDispose]() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A native TLS client over a new TCP connection to `port` (handshake started, not awaited). */
export async function nativeClient(port: number, context: NativeTlsContext, opts: Omit<NativeTlsOptions, 'server'> = {}): Promise<NativeTlsSocket> {
  const raw = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    raw.once('connect', resolve);
    raw.once('error', reject);
  });
  const t = new NativeTlsSocket(raw, context, { ...opts, server: false });
  t.on('error', () => {});
  return t;
}

/** Collects everything a stream emits until it ends or closes. */
export function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    const done = () => resolve(Buffer.concat(chunks));
    stream.once('end', done);
    stream.once('close', done);
  });
}

/** Reads exactly `n` bytes from a stream. */
export function readBytes(stream: NodeJS.ReadableStream, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= n) {
        stream.off('data', onData);
        stream.off('close', onClose);
        resolve(Buffer.concat(chunks));
      }
    };
    const onClose = () => reject(new Error(`closed after ${got} of ${n} bytes`));
    stream.on('data', onData);
    stream.once('close', onClose);
  });
}

export interface SplitRelay extends AsyncDisposable {
  port: number;
  /** Bytes forwarded each way so far. */
  forwarded: { toServer: number; toClient: number };
}

/**
 * A TCP relay to `targetPort` that forwards each direction in pieces whose sizes come from
 * `pieces` (cycled; 1 = every byte a write of its own), waiting a turn of the event loop between
 * writes so that each piece arrives in a read of its own.
 */
export async function splitRelay(targetPort: number, pieces: readonly number[]): Promise<SplitRelay> {
  const sockets = new Set<net.Socket>();
  const forwarded = { toServer: 0, toClient: 0 };
  const pump = (from: net.Socket, to: net.Socket, count: (n: number) => void) => {
    let queue = Buffer.alloc(0);
    let busy = false;
    let ended = false;
    let turn = 0;
    const drain = async () => {
      if (busy) return;
      busy = true;
      while (queue.length > 0 && !to.destroyed) {
        const size = Math.max(1, pieces[turn++ % pieces.length]!);
        const piece = queue.subarray(0, size);
        queue = queue.subarray(piece.length);
        to.write(piece);
        count(piece.length);
        await new Promise((r) => setImmediate(r));
      }
      busy = false;
      if (ended && queue.length === 0) to.end();
    };
    from.on('data', (d: Buffer) => {
      queue = Buffer.concat([queue, d]);
      void drain();
    });
    from.on('end', () => {
      ended = true;
      void drain();
    });
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      sockets.add(s);
      s.on('error', () => {});
      s.once('close', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    pump(client, upstream, (n) => (forwarded.toServer += n));
    pump(upstream, client, (n) => (forwarded.toClient += n));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    forwarded,
    async [Symbol.asyncDispose]() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A server certificate of `ca` for localhost whose validity ended yesterday (openssl's -days cannot go back, so `ca` signs it with explicit dates). */
export async function issueExpired(ca: TestCA, name: string): Promise<CertPaths> {
  const key = join(ca.dir, `${name}.key`);
  const csr = join(ca.dir, `${name}.csr`);
  const cert = join(ca.dir, `${name}.crt`);
  const conf = join(ca.dir, `${name}.cnf`);
  const db = join(ca.dir, `${name}.index`);
  const serial = join(ca.dir, `${name}.serial`);
  await execFileAsync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', '/CN=localhost']);
  await writeFile(db, '');
  await writeFile(serial, '1000\n');
  await writeFile(
    conf,
    [
      '[ca]', 'default_ca = test', '[test]', `database = ${db}`, `serial = ${serial}`, `new_certs_dir = ${ca.dir}`, 'default_md = sha256', 'policy = any',
      'unique_subject = no', 'copy_extensions = none', 'x509_extensions = leaf', '[any]', 'commonName = supplied',
      '[leaf]', 'basicConstraints = critical, CA:FALSE', 'keyUsage = critical, digitalSignature', 'extendedKeyUsage = serverAuth',
      'subjectAltName = DNS:localhost',
    ].join('\n') + '\n',
  );
  const day = (offset: number) => new Date(Date.now() + offset * 86_400_000).toISOString().slice(2, 10).replace(/-/g, '') + '000000Z';
  await execFileAsync('openssl', ['ca', '-batch', '-config', conf, '-cert', ca.cert, '-keyfile', ca.key, '-in', csr, '-out', cert,
    '-startdate', day(-3), '-enddate', day(-1), '-notext']);
  return { cert, key };
}

/** What the TLS-on-both-hops tests share: a CA, pgward's certificate for localhost, a PostgreSQL that accepts TLS only. */
export interface TlsBothHops {
  ca: TestCA;
  proxyCert: CertPaths;
  cluster: PgCluster;
  /** The backend URL pgward dials, verify-full against the CA (`port`: a relay in front of the cluster). */
  backendUrl(port?: number): string;
  close(): Promise<void>;
}

export async function tlsBothHops(): Promise<TlsBothHops> {
  const ca = await TestCA.create();
  const proxyCert = await ca.issue('proxy', { cn: 'localhost' });
  const server = await ca.issue('server', { cn: 'localhost', sans: ['DNS:localhost'] });
  const cluster = await PgCluster.start({
    ssl: { ...server, ca: ca.cert },
    hba: ['hostssl all all 127.0.0.1/32 trust', 'hostnossl all all 127.0.0.1/32 reject'],
  });
  return {
    ca,
    proxyCert,
    cluster,
    backendUrl: (port = cluster.port) => `postgres://postgres@localhost:${port}/postgres?sslmode=verify-full&sslrootcert=${ca.cert}`,
    async close() {
      await cluster.stop();
      await ca[Symbol.asyncDispose]();
    },
  };
}

/** A TLS connection to a PostgreSQL-speaking `port` the way libpq opens one: SSLRequest, 'S', the handshake (verify-full for localhost against `caPath`). */
export async function tlsAfterSslRequest(port: number, caPath: string): Promise<tls.TLSSocket> {
  const raw = net.connect(port, '127.0.0.1');
  raw.on('error', () => {});
  await new Promise<void>((resolve, reject) => raw.once('connect', resolve).once('error', reject));
  raw.write(encodeSSLRequest());
  const answer = await new Promise<Buffer>((resolve) => raw.once('data', resolve));
  if (answer.toString('latin1') !== 'S') throw new Error(`SSLRequest answered ${JSON.stringify(answer.toString('latin1'))}`);
  const secure = tls.connect({ socket: raw, ca: readFileSync(caPath), servername: 'localhost' });
  secure.on('error', () => {});
  await new Promise<void>((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
  return secure;
}

/** Sends a CancelRequest for (processID, secretKey) over TLS, as libpq does when the session uses TLS. */
export async function cancelOverTls(port: number, caPath: string, processID: number, secretKey: number): Promise<void> {
  const secure = await tlsAfterSslRequest(port, caPath);
  const key = Buffer.alloc(4);
  key.writeInt32BE(secretKey);
  secure.end(encodeCancelRequest(processID, key));
}
