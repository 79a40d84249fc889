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
import { parseBackendUrl, redactUrl } from '../backend/url.js';
import { START_FLAGS } from '../config/flags.js';
import { ConfigError } from '../config/load.js';
import { buildProxyConfig } from '../config/proxy-config.js';
import { createLogger } from '../telemetry/log.js';
import { PgliteStartError, startPglite, type EmbeddedDb } from './demo-pglite.js';
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
/** Proxy sessions at once; PGlite's socket server gets headroom for connections still closing. */
const PROXY_MAX_CONNECTIONS = 16;
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
  const stop = new StopSignals(err);
  const cleanups: (() => Promise<void>)[] = [];
  let code = 0;
  try {
    await runUntilStopped(opts, stop, cleanups, out, err);
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
    stop.dispose();
  }
  return code;
}

/**
 * SIGINT/SIGTERM while the demo runs. Signals may arrive while the (slow) database starts: the
 * first is remembered and the demo stops after the current step; a second closes every session.
 */
class StopSignals {
  signalled: NodeJS.Signals | undefined;
  /** Set once the proxy runs: a second signal then closes its sessions at once. */
  proxy: RunningProxy | undefined;
  readonly requested: Promise<void>;
  private wake: () => void = () => {};
  private readonly onSignal = (sig: NodeJS.Signals) => this.take(sig);

  constructor(private readonly err: NodeJS.WritableStream) {
    this.requested = new Promise<void>((r) => (this.wake = r));
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
  }

  dispose(): void {
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
  }

  private take(sig: NodeJS.Signals): void {
    if (this.signalled === undefined) {
      this.signalled = sig;
      this.err.write(`\npgward demo: ${sig}: stopping (again to stop at once)\n`);
      this.wake();
      return;
    }
    if (this.proxy === undefined) {
      // Not forced: killing PGlite while it initialises a --data directory could leave it broken.
      this.err.write('pgward demo: still starting; stopping as soon as the database is up\n');
      return;
    }
    this.err.write('pgward demo: second signal: closing all sessions now\n');
    // Ends every session now; the drain in progress then finishes at once.
    void this.proxy.server.close().catch(() => {});
  }
}

const HOST = '127.0.0.1';

/** The database, the keys, the proxy and the banner; then waits for a signal and drains. */
async function runUntilStopped(
  opts: DemoOptions,
  stop: StopSignals,
  cleanups: (() => Promise<void>)[],
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
): Promise<void> {
  await probePort(HOST, opts.port);
  let backend: { url: string; describe: string };
  if (opts.backend !== undefined) {
    backend = { url: opts.backend, describe: `the PostgreSQL at ${redactUrl(opts.backend)}` };
  } else {
    err.write(`pgward demo: starting PGlite${opts.dataDir ? ` in ${opts.dataDir}` : ''} (takes a few seconds)…\n`);
    let db: EmbeddedDb;
    try {
      db = await startPglite(opts.dataDir, 2 * PROXY_MAX_CONNECTIONS);
    } catch (e) {
      throw e instanceof PgliteStartError ? new DemoError(e.message, 1) : e;
    }
    cleanups.push(() => db.stop());
    backend = db;
  }
  if (stop.signalled) return;
  const keys = await demoKeys(backend.url, cleanups);
  const { flags, metricsBase } = await demoFlags(opts.port, keys);
  let config;
  try {
    config = buildProxyConfig(flags, {}); // {}: PGWARD_* variables do not change the demo
  } catch (e) {
    if (e instanceof ConfigError) throw new DemoError(`internal configuration problem: ${e.problems.join('; ')}`, 1);
    throw e;
  }
  // Logs go to stderr, so stdout holds only the banner.
  const log = createLogger(config.log, {}, { write: (line) => void err.write(line) });
  let running: RunningProxy;
  try {
    running = await startProxy(config, { log });
  } catch (e) {
    throw portError(e, opts.port);
  }
  stop.proxy = running;
  let proxyStopped = false;
  const stopProxy = async () => {
    if (proxyStopped) return;
    proxyStopped = true;
    await running.drain();
  };
  cleanups.push(stopProxy); // also on a failure below
  if (stop.signalled) return;
  const token = await mintDemoToken(keys.privateKey);
  const metricsOk = metricsBase !== undefined && (await metricsAnswer(metricsBase));
  out.write(banner({ opts, port: running.address.port, backendText: backend.describe, token, keyDir: keys.dir, metricsBase, metricsOk }));
  await stop.requested;
  await stopProxy();
  err.write('pgward demo: stopped\n');
}

interface DemoKeys {
  dir: string;
  privateKey: string;
  jwks: string;
  backendsFile: string;
}

/** A fresh key pair and a backends file sending every subject to the one database, in a temporary directory. */
async function demoKeys(backendUrl: string, cleanups: (() => Promise<void>)[]): Promise<DemoKeys> {
  const dir = await mkdtemp(join(tmpdir(), 'pgward-demo-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const keygenOut = new Capture();
  const keygenErr = new Capture();
  if ((await runKeygen(['--alg', 'EdDSA', '--out', dir], keygenOut, keygenErr)) !== 0) {
    throw new DemoError(`cannot create the demo keys: ${keygenErr.text.trim()}`, 1);
  }
  const backendsFile = join(dir, 'backends.json');
  // Every subject reaches the one database; requireUserMatch still ties the startup user to it.
  await writeFile(backendsFile, JSON.stringify({ [DEMO_USER]: backendUrl, '*': backendUrl }, null, 2) + '\n', { mode: 0o600 });
  return { dir, privateKey: join(dir, 'private.pem'), jwks: join(dir, 'jwks.json'), backendsFile };
}

async function demoFlags(port: number, keys: DemoKeys): Promise<{ flags: string[]; metricsBase?: string }> {
  const flags = [
    '--bindAddr', `${HOST}:${port}`,
    '--insecure',
    '--backends', keys.backendsFile,
    '--signingKeys', keys.jwks,
    '--gracePeriod', GRACE_PERIOD,
    '--maxConnections', String(PROXY_MAX_CONNECTIONS),
  ];
  // The metrics endpoint, when this build has the flag (it is wired into `start` separately).
  if (!START_FLAGS.some((f) => f.name === 'metricsAddr')) return { flags };
  const metricsPort = await freePort();
  flags.push('--metricsAddr', `${HOST}:${metricsPort}`);
  return { flags, metricsBase: `http://${HOST}:${metricsPort}` };
}

async function mintDemoToken(privateKey: string): Promise<string> {
  const tokenOut = new Capture();
  const tokenErr = new Capture();
  if ((await runToken(['--key', privateKey, '--sub', DEMO_USER, '--ttl', TOKEN_TTL], tokenOut, tokenErr)) !== 0) {
    throw new DemoError(`cannot mint the demo token: ${tokenErr.text.trim()}`, 1);
  }
  return tokenOut.text.trim();
}

interface BannerFacts {
  opts: DemoOptions;
  port: number;
  backendText: string;
  token: string;
  keyDir: string;
  metricsBase?: string;
  metricsOk: boolean;
}

/** What stdout shows: how to connect, where the metrics are, how to mint more tokens, the limits. */
function banner({ opts, port, backendText, token, keyDir, metricsBase, metricsOk }: BannerFacts): string {
  const expires = new Date(JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')).exp * 1000);
  const database = opts.backend !== undefined ? (parseBackendUrl(opts.backend).database ?? 'postgres') : 'postgres';
  const clientUrl = (password?: string) =>
    `postgres://${DEMO_USER}${password ? ':' + password : ''}@${HOST}:${port}/${encodeURIComponent(database)}?sslmode=disable`;
  const query = opts.backend === undefined ? 'select * from demo;' : 'select current_user, version();';
  const privateKey = join(keyDir, 'private.pem');
  const metrics = metricsOk
    ? `${metricsBase}/metrics  (also /health, /ready)`
    : metricsBase === undefined
      ? 'not available (this build has no --metricsAddr)'
      : `not available (nothing answered on ${metricsBase}/health)`;
  const lines = [
    '',
    `pgward demo: the proxy on ${HOST}:${port} in front of ${backendText}`,
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
    `Metrics:      ${metrics}`,
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
  return lines.join('\n') + '\n';
}
