/**
 * `pgward demo`: the embedded default. Starts an in-process PGlite database (PostgreSQL compiled to
 * WebAssembly) on a free loopback port, a fresh Ed25519 key pair in a temporary directory, and the
 * proxy in front of the database; mints a token for the user "demo" and prints a ready `psql`
 * command line. SIGINT/SIGTERM drains the proxy, stops PGlite and removes the temporary keys.
 */
import { createServer } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import type { PGlite } from '@electric-sql/pglite';
import type { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { parseBackendUrl, redactUrl } from '../backend/url.js';
import { START_FLAGS } from '../config/flags.js';
import { ConfigError } from '../config/load.js';
import { buildProxyConfig } from '../config/proxy-config.js';
import { createLogger } from '../telemetry/log.js';
import { parseFlags, runKeygen, UsageError, wantsHelp } from './keygen.js';
import { startProxy, type RunningProxy } from './start.js';
import { runToken } from './token.js';

const DEMO_USAGE = `Usage: pgward demo [--port N] [--data DIR] [--backend URL]

Starts everything needed to try pgward on this machine, with nothing else installed:
  - an embedded PostgreSQL (PGlite, in this process) on a free loopback port, with a table "demo";
  - a fresh Ed25519 signing key pair in a temporary directory (removed on exit);
  - the proxy on 127.0.0.1:PORT in front of the database (no TLS: loopback only);
and prints a psql command line carrying a valid token (a JWT for the user "demo", valid 1 hour).
Ctrl-C drains the proxy, stops the database and removes the keys.

Flags:
  --port N        where the proxy listens on 127.0.0.1 (default 13013)
  --data DIR      keep the PGlite database in DIR (created if missing; default: in memory)
  --backend URL   use this PostgreSQL instead of PGlite, e.g.
                  'postgres://app:secret@localhost:5432/app?sslmode=disable' (nothing is created in it)

Example:
  pgward demo
  PGPASSWORD=<the printed token> psql "postgres://demo@127.0.0.1:13013/postgres?sslmode=disable" -c 'select * from demo'
`;

/** The user the demo token is minted for (and the startup user clients log in as). */
const DEMO_USER = 'demo';
const DEFAULT_DEMO_PORT = 13013;
/** The rows seeded into the `demo` table when it is missing. */
const DEMO_ROWS: readonly (readonly [number, string, string])[] = [
  [1, 'alpha', 'the first row'],
  [2, 'bravo', 'reached through pgward'],
  [3, 'charlie', 'authenticated with a JWT'],
  [4, 'delta', 'stored in PGlite'],
  [5, 'echo', 'PostgreSQL in WebAssembly'],
];
/** Proxy sessions at once; PGlite's socket server gets headroom for connections still closing. */
const PROXY_MAX_CONNECTIONS = 16;
const PGLITE_MAX_CONNECTIONS = 2 * PROXY_MAX_CONNECTIONS;
const GRACE_PERIOD = '5s';
const TOKEN_TTL = '1h';

/** Collects what a CLI helper writes (keygen/token take their output streams as arguments). */
class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer | string, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.text += chunk.toString();
    done();
  }
}

class DemoError extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
  }
}

interface DemoOptions {
  port: number;
  dataDir?: string;
  backend?: string;
}

function parseDemoArgs(argv: readonly string[]): DemoOptions {
  const flags = parseFlags(argv, { port: { value: true }, data: { value: true }, backend: { value: true } });
  const one = (name: string) => flags.values.get(name)?.[0];
  const portText = one('port');
  let port = DEFAULT_DEMO_PORT;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw new UsageError(`--port "${portText}" is not a port number (0-65535)`);
    port = Number(portText);
  }
  const data = one('data');
  if (data !== undefined && data.trim() === '') throw new UsageError('--data needs a directory');
  const backend = one('backend');
  if (data !== undefined && backend !== undefined) throw new UsageError('--data and --backend exclude each other (--data is for PGlite)');
  if (backend !== undefined) {
    try {
      parseBackendUrl(backend);
    } catch (e) {
      throw new UsageError(`--backend: ${(e as Error).message}`);
    }
  }
  return { port, dataDir: data === undefined ? undefined : resolve(data), backend };
}

/** Fails early, before the slow database start, when the proxy's port is taken. */
function probePort(host: string, port: number): Promise<void> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', (e: NodeJS.ErrnoException) => reject(portError(e, port)));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolvePort()));
  });
}

function portError(e: unknown, port: number): unknown {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EADDRINUSE') {
    return new DemoError(`port ${port} on 127.0.0.1 is already in use (another pgward demo?); choose another with --port N`, 1);
  }
  if (code === 'EACCES') return new DemoError(`not allowed to listen on port ${port}; choose one above 1023 with --port N`, 1);
  return e;
}

/** A loopback port that was free a moment ago (the kernel picks it). */
function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const address = server.address();
      const port = address !== null && typeof address === 'object' ? address.port : 0;
      server.close(() => (port ? resolvePort(port) : reject(new Error('no free port'))));
    });
  });
}

interface EmbeddedDb {
  url: string;
  describe: string;
  stop(): Promise<void>;
}

/** Starts PGlite (persisted in `dataDir`, else in memory), seeds `demo`, serves it on a loopback port. */
async function startPglite(dataDir: string | undefined): Promise<EmbeddedDb> {
  // Loaded here, not at the top: every other command would otherwise pay for loading PGlite.
  const { PGlite: PGliteClass } = await import('@electric-sql/pglite');
  const { PGLiteSocketServer: SocketServer } = await import('@electric-sql/pglite-socket');
  let db: PGlite;
  try {
    db = dataDir === undefined ? await PGliteClass.create() : await PGliteClass.create({ dataDir });
  } catch (e) {
    throw new DemoError(`cannot start PGlite${dataDir ? ` in ${dataDir}` : ''}: ${(e as Error)?.message ?? String(e)}`, 1);
  }
  let server: PGLiteSocketServer | undefined;
  try {
    const missing = await db.query<{ missing: boolean }>(`select to_regclass('public.demo') is null as missing`);
    if (missing.rows[0]?.missing) {
      await db.transaction(async (tx) => {
        await tx.exec('create table public.demo (id integer primary key, name text not null, note text)');
        for (const [id, name, note] of DEMO_ROWS) {
          await tx.query('insert into public.demo (id, name, note) values ($1, $2, $3)', [id, name, note]);
        }
      });
    }
    const version = (await db.query<{ v: string }>(`select current_setting('server_version') as v`)).rows[0]?.v ?? '?';
    server = new SocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: PGLITE_MAX_CONNECTIONS });
    await server.start();
    const conn = server.getServerConn(); // "127.0.0.1:PORT" once listening
    const port = Number(conn.slice(conn.lastIndexOf(':') + 1));
    const s = server;
    return {
      // PGlite has one user and one database and accepts any password; it answers SSLRequest with N.
      // It never answers a StartupMessage asking for protocol 3.2 (no error, no NegotiateProtocolVersion).
      url: `postgres://postgres@127.0.0.1:${port}/postgres?sslmode=disable&max_protocol_version=3.0`,
      describe: `PGlite (PostgreSQL ${version} in WebAssembly, ${dataDir ? `data in ${dataDir}` : 'in memory'}) on 127.0.0.1:${port}`,
      async stop() {
        await s.stop();
        await db.close();
      },
    };
  } catch (e) {
    await server?.stop().catch(() => {});
    await db.close().catch(() => {});
    throw e;
  }
}

/** GET /health on the metrics address: the banner names the metrics URL only when it answers. */
async function metricsAnswer(base: string): Promise<boolean> {
  try {
    const res = await fetch(`${base}/health`, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

/** `pgward demo`: runs until SIGINT/SIGTERM; returns the exit code (0 clean stop, 2 usage, 1 failure). */
export async function runDemo(
  argv: string[],
  out: NodeJS.WritableStream = process.stdout,
  err: NodeJS.WritableStream = process.stderr,
): Promise<number> {
  if (wantsHelp(argv)) {
    out.write(DEMO_USAGE);
    return 0;
  }
  let opts: DemoOptions;
  try {
    opts = parseDemoArgs(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      err.write(`pgward demo: ${e.message} (see pgward demo --help)\n`);
      return 2;
    }
    throw e;
  }

  // Signals may arrive while the (slow) database starts: remember them, stop after the current step.
  let signalled: NodeJS.Signals | undefined;
  let proxy: RunningProxy | undefined;
  let wake: () => void = () => {};
  const stopRequested = new Promise<void>((r) => (wake = r));
  const onSignal = (sig: NodeJS.Signals) => {
    if (signalled === undefined) {
      signalled = sig;
      err.write(`\npgward demo: ${sig}: stopping (again to stop at once)\n`);
      wake();
      return;
    }
    if (proxy === undefined) {
      // Not forced: killing PGlite while it initialises a --data directory could leave it broken.
      err.write('pgward demo: still starting; stopping as soon as the database is up\n');
      return;
    }
    err.write('pgward demo: second signal: closing all sessions now\n');
    // Ends every session now; the drain in progress then finishes at once.
    void proxy.server.close().catch(() => {});
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const cleanups: (() => Promise<void>)[] = [];
  const host = '127.0.0.1';
  let code = 0;
  try {
    await probePort(host, opts.port);

    let backendUrl: string;
    let backendText: string;
    if (opts.backend !== undefined) {
      backendUrl = opts.backend;
      backendText = `the PostgreSQL at ${redactUrl(opts.backend)}`;
    } else {
      err.write(`pgward demo: starting PGlite${opts.dataDir ? ` in ${opts.dataDir}` : ''} (takes a few seconds)…\n`);
      const db = await startPglite(opts.dataDir);
      cleanups.push(() => db.stop());
      backendUrl = db.url;
      backendText = db.describe;
    }
    if (signalled) return 0;

    const keyDir = await mkdtemp(join(tmpdir(), 'pgward-demo-'));
    cleanups.push(() => rm(keyDir, { recursive: true, force: true }));
    const keygenOut = new Capture();
    const keygenErr = new Capture();
    if ((await runKeygen(['--alg', 'EdDSA', '--out', keyDir], keygenOut, keygenErr)) !== 0) {
      throw new DemoError(`cannot create the demo keys: ${keygenErr.text.trim()}`, 1);
    }
    const privateKey = join(keyDir, 'private.pem');
    const jwks = join(keyDir, 'jwks.json');
    const backendsFile = join(keyDir, 'backends.json');
    // Every subject reaches the one database; requireUserMatch still ties the startup user to it.
    await writeFile(backendsFile, JSON.stringify({ [DEMO_USER]: backendUrl, '*': backendUrl }, null, 2) + '\n', { mode: 0o600 });

    const flags = [
      '--bindAddr', `${host}:${opts.port}`,
      '--insecure',
      '--backends', backendsFile,
      '--signingKeys', jwks,
      '--gracePeriod', GRACE_PERIOD,
      '--maxConnections', String(PROXY_MAX_CONNECTIONS),
    ];
    // The metrics endpoint, when this build has the flag (it is wired into `start` separately).
    let metricsBase: string | undefined;
    if (START_FLAGS.some((f) => f.name === 'metricsAddr')) {
      const metricsPort = await freePort();
      flags.push('--metricsAddr', `${host}:${metricsPort}`);
      metricsBase = `http://${host}:${metricsPort}`;
    }
    let config;
    try {
      config = buildProxyConfig(flags, {}); // {}: PGWARD_* variables do not change the demo
    } catch (e) {
      if (e instanceof ConfigError) throw new DemoError(`internal configuration problem: ${e.problems.join('; ')}`, 1);
      throw e;
    }
    // Logs go to stderr, so stdout holds only the banner.
    const log = createLogger(config.log, {}, { write: (line) => void err.write(line) });
    try {
      proxy = await startProxy(config, { log });
    } catch (e) {
      throw portError(e, opts.port);
    }
    const running = proxy;
    let proxyStopped = false;
    const stopProxy = async () => {
      if (proxyStopped) return;
      proxyStopped = true;
      await running.drain();
    };
    cleanups.push(stopProxy); // also on a failure below
    if (signalled) return 0;

    const tokenOut = new Capture();
    const tokenErr = new Capture();
    if ((await runToken(['--key', privateKey, '--sub', DEMO_USER, '--ttl', TOKEN_TTL], tokenOut, tokenErr)) !== 0) {
      throw new DemoError(`cannot mint the demo token: ${tokenErr.text.trim()}`, 1);
    }
    const token = tokenOut.text.trim();
    const expires = new Date(JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')).exp * 1000);
    const metricsOk = metricsBase !== undefined && (await metricsAnswer(metricsBase));

    const port = running.address.port;
    const database = opts.backend !== undefined ? (parseBackendUrl(opts.backend).database ?? 'postgres') : 'postgres';
    const clientUrl = (password?: string) =>
      `postgres://${DEMO_USER}${password ? ':' + password : ''}@${host}:${port}/${encodeURIComponent(database)}?sslmode=disable`;
    const query = opts.backend === undefined ? 'select * from demo;' : 'select current_user, version();';
    const lines = [
      '',
      `pgward demo: the proxy on ${host}:${port} in front of ${backendText}`,
      '',
      `Connect with psql (the password is a JWT for the user "${DEMO_USER}", valid until ${expires.toISOString()}):`,
      '',
      `  PGPASSWORD='${token}' psql "${clientUrl()}"`,
      '',
      `and try: ${query}`,
      '',
      'or with any PostgreSQL driver, as a URL:',
      '',
      `  ${clientUrl(token)}`,
      '',
      `Metrics:      ${
        metricsOk
          ? `${metricsBase}/metrics  (also /health, /ready)`
          : metricsBase === undefined
            ? 'not available (this build has no --metricsAddr)'
            : `not available (nothing answered on ${metricsBase}/health)`
      }`,
      `More tokens:  npx pgward token --key ${privateKey} --sub ${DEMO_USER} --ttl ${TOKEN_TTL}`,
      `              (in this checkout; plain \`pgward\` after \`npm install -g .\`; any --sub works: all reach the same database)`,
      `Keys:         ${keyDir} (temporary; removed on exit)`,
      ...(opts.backend === undefined
        ? [
            `Limits:       PGlite is a single-session database: all proxy sessions (at most ${PROXY_MAX_CONNECTIONS}) share its one`,
            '              session and run one statement at a time; a transaction left open holds up the others;',
            '              cancel requests are ignored. Fine for trying pgward, not for load.',
          ]
        : []),
      'No TLS (--insecure): the proxy listens on loopback only. Press Ctrl-C to stop.',
      '',
    ];
    out.write(lines.join('\n') + '\n');

    await stopRequested;
    await stopProxy();
    err.write('pgward demo: stopped\n');
  } catch (e) {
    if (e instanceof DemoError) {
      err.write(`pgward demo: ${e.message}\n`);
      code = e.code;
    } else {
      err.write(`pgward demo: ${(e as Error)?.stack ?? String(e)}\n`);
      code = 1;
    }
  } finally {
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup();
      } catch (e) {
        err.write(`pgward demo: while stopping: ${(e as Error)?.message ?? String(e)}\n`);
      }
    }
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return code;
}
