/**
 * For the PROXY protocol tests: headers built byte by byte from
 * https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt (not with pgward's own encoder), and
 * a real PostgreSQL with a `pgward start` configuration (`remote-addr` in the pipeline) to start
 * pgward processes on.
 */
import net from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import pg from 'pg';
import { PgCluster } from './pg-cluster.js';
import { startPgwardProcess, type PgwardProcess } from './pgward-process.js';

export const REMOTE_ADDR = 'pgward.remote_addr';
/** The v2 signature, section 2.2: \r\n\r\n\0\r\nQUIT\n. */
export const V2_SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

export function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

/** A v2 header from its parts: version/command byte, family/transport byte, address block. */
export function v2(verCmd: number, famProto: number, block: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([V2_SIG, Buffer.from([verCmd, famProto]), u16(block.length), block]);
}

export const ipv4 = (a: string) => Buffer.from(a.split('.').map(Number));

export interface ProxyProtocolFixture {
  /** A token for alice, the one user the backends file routes. */
  token: string;
  /** The configuration's folder (a test may write more files into it). */
  dir: string;
  /** A `pgward start` process with --proxyProtocol and the fixture's configuration, plus `extra` flags. */
  start(extra?: string[]): Promise<PgwardProcess>;
  /** Logs in as alice through `port` (a shim or HAProxy); returns pgward.remote_addr and the client's local port. */
  remoteAddrVia(port: number, password?: string): Promise<{ addr: string; localPort: number }>;
  /** The `client` field of the 'session started' events logged since `mark`. */
  sessionClients(proxy: PgwardProcess, mark: number): unknown[];
}

/** Call inside a describe: starts the cluster and writes the configuration before its tests, removes both after. */
export function proxyProtocolFixture(): ProxyProtocolFixture {
  let cluster: PgCluster | undefined;
  let baseArgs: string[] = [];
  const fx = {} as ProxyProtocolFixture;

  before(async () => {
    cluster = await PgCluster.start({ hba: ['host all all 127.0.0.1/32 scram-sha-256'], users: [{ name: 'alice', password: 'alice-pw' }] });
    const dir = (fx.dir = await mkdtemp(join(tmpdir(), 'pgward-proxyproto-')));
    const key = await generateKeyPair('EdDSA', { extractable: true });
    await writeFile(join(dir, 'key.pem'), await exportSPKI(key.publicKey));
    await writeFile(join(dir, 'backends.json'), JSON.stringify({ alice: `${cluster!.url('alice', 'alice-pw')}?sslmode=disable` }));
    await writeFile(join(dir, 'pgward.yaml'), `pipeline:\n  - remote-addr: { param: ${REMOTE_ADDR} }\n  - drain-gate\n`);
    fx.token = await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'EdDSA' }).setIssuedAt().setExpirationTime('30m').sign(key.privateKey);
    baseArgs = [
      '--insecure', '--proxyProtocol', '--config', join(dir, 'pgward.yaml'),
      '--backends', join(dir, 'backends.json'), '--signingKeys', join(dir, 'key.pem'),
    ];
  });

  after(async () => {
    await cluster?.stop();
    if (fx.dir) await rm(fx.dir, { recursive: true, force: true });
  });

  fx.start = (extra: string[] = []): Promise<PgwardProcess> => startPgwardProcess([...baseArgs, ...extra]);

  fx.remoteAddrVia = async function remoteAddrVia(port: number, password = fx.token): Promise<{ addr: string; localPort: number }> {
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'alice', password, database: 'postgres', connectionTimeoutMillis: 5_000 });
    c.on('error', () => {});
    try {
      await c.connect();
      const localPort = (c as unknown as { connection: { stream: net.Socket } }).connection.stream.localPort!;
      const r = await c.query<{ a: string }>(`select current_setting('${REMOTE_ADDR}') as a`);
      return { addr: r.rows[0]!.a, localPort };
    } finally {
      await c.end().catch(() => {});
    }
  };

  fx.sessionClients = function sessionClients(proxy: PgwardProcess, mark: number): unknown[] {
    return proxy.events.slice(mark).filter((e) => e.msg === 'session started').map((e) => e.client);
  };
  return fx;
}
