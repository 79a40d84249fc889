/**
 * pgbench through pgward versus a direct connection (and PgBouncer in session mode when
 * installed), on a throw-away cluster. `pgward` relays on the native relay (native/relay.c, when
 * built), `pgward-js` on the JavaScript one (--no-nativeRelay). `pgward-traced` is pgward with tracing on, every session
 * sampled, exporting OTLP/HTTP to a sink in this process, so its row shows what tracing costs.
 * `node-pipe` is a bare Node proxy (socket.pipe both ways): the floor for any proxy built on
 * Node's sockets, so pgward's own cost is its distance from that row.
 * `npm run bench`; quick try:
 *   BENCH_SECONDS=3 BENCH_CLIENTS=8 BENCH_TARGETS=direct,pgward npm run bench
 * Env: BENCH_SECONDS (15), BENCH_CLIENTS (1,8,32), BENCH_TARGETS (direct,node-pipe,pgward,pgward-js,pgward-traced,pgbouncer),
 * BENCH_SCRIPTS (select-only,tpcb-like), BENCH_SCALE (10), BENCH_ROUNDS (1: each cell measured that
 * many times, every target in turn, and the table shows medians). For investigating: BENCH_RATE (pgbench
 * -R, a fixed total TPS, to compare proxy CPU per transaction on a machine that is not saturated),
 * BENCH_PGWARD_ARGS (more `pgward start` flags, e.g. "--config x.yaml"), BENCH_PGWARD_NODE_ARGS
 * (Node options for the pgward processes, e.g. "--single-threaded-gc"). A target that cannot
 * start or run is reported as "failed: reason" in its rows; the other targets still run.
 * Each row also shows the machine's steal time during it (a VM's CPUs taken by its host), and the
 * end lists pgward ÷ PgBouncer (and pgward-js ÷ PgBouncer) round by round. BENCH_MAX_STEAL (percent) measures a cell again,
 * up to three times, while any of its rows saw more steal than that. BENCH_PROXY_SESSION (own |
 * shared): whether the proxies run in sessions of their own (the default) or in the bench's.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nativeRelayAvailability } from '../src/pipeline/native-relay.js';
import { PgCluster, pgBinDir, serverOsUser, whichExecutable } from '../test/helpers/pg-cluster.js';
import { freePort } from '../test/helpers/ports.js';

const TARGETS = ['direct', 'node-pipe', 'pgward', 'pgward-js', 'pgward-traced', 'pgbouncer'] as const;
type TargetName = (typeof TARGETS)[number];

/** `-S` is pgbench's built-in select-only script; no flag means the TPC-B-like default. */
const SCRIPTS = [
  { name: 'select-only', flags: ['-S'] },
  { name: 'tpcb-like', flags: [] as string[] },
] as const;

interface BenchConfig {
  seconds: number;
  clients: number[];
  targets: TargetName[];
  scripts: (typeof SCRIPTS)[number][];
  scale: number;
  pgwardNodeArgs: string[];
  pgwardArgs: string[];
  /** pgbench `-R`: a fixed total rate, so CPU per transaction is compared without saturation. */
  rate?: number;
  /** Times every cell is measured; the table shows each cell's median. */
  rounds: number;
  /** A cell in which any row saw more steal than this (percent) is measured again. */
  maxSteal?: number;
}

/** Measurements of one cell before its last is kept however noisy. */
const MAX_ATTEMPTS = 3;

/** A server pgbench can be pointed at; `pid` is the proxy process whose CPU time we measure. */
interface Target extends AsyncDisposable {
  port: number;
  pid?: number;
}

interface Row {
  target: TargetName;
  script: string;
  clients: number;
  round: number;
  tps?: number;
  /** Proxy CPU (user + system) per transaction, microseconds. */
  cpuUsPerTxn?: number;
  /**
   * Share of the machine's CPU time the hypervisor gave to other guests during the run (/proc/stat
   * "steal"), percent: on a shared VM the rounds that differ most are the ones the host took from.
   */
  stealPct?: number;
  error?: string;
}

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

async function main(): Promise<void> {
  const config = readConfig();
  const pgbench = await pgbenchPath();
  // Headroom over the largest client count: pgbench and PgBouncer each need their connections.
  const maxClients = Math.max(...config.clients);
  await using cluster = await PgCluster.start({ maxConnections: Math.max(100, maxClients * 2 + 20) });
  const version = (await cluster.sql<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]!.v;
  console.log(`PostgreSQL ${version}, scale ${config.scale}, ${config.seconds} s per run, ` +
    `clients ${config.clients.join(',')}, ${availableParallelism()} CPUs`);

  const native = nativeRelayAvailability();
  console.log(native.available ? 'native relay: built (the pgward row uses it)' : `native relay: NOT available (${native.reason}): the pgward row relays in JavaScript`);
  console.log(`initialising pgbench tables (-s ${config.scale}) …`);
  const init = await runProcess(pgbench, ['-i', '-q', '-s', String(config.scale), ...connArgs(cluster.port)], 600_000);
  if (init.code !== 0) throw new Error(`pgbench -i failed (${init.code}): ${lastLines(init.stderr, 5)}`);

  const rows: Row[] = [];
  const targets = await startTargets(cluster, config, rows);
  try {
    // Cell by cell, every target in turn: the rows compared in a ratio are measured minutes apart
    // at most, not a whole target's series apart, which on a shared machine drifts.
    for (let round = 1; round <= config.rounds; round++) {
      for (const script of config.scripts) {
        for (const clients of config.clients) {
          for (let attempt = 1; ; attempt++) {
            const cell: Row[] = [];
            for (const [name, target] of targets) {
              const row = await runOne(pgbench, target, { target: name, script: script.name, clients, round }, script.flags, config);
              cell.push(row);
              console.log(formatRow(row, directRow(cell, row)) + (config.rounds > 1 ? `  (round ${round})` : ''));
            }
            const noisy = cell.some((r) => r.stealPct !== undefined && config.maxSteal !== undefined && r.stealPct > config.maxSteal);
            if (noisy && attempt < MAX_ATTEMPTS) {
              console.log(`  steal above ${config.maxSteal} % in this cell: measuring it again (attempt ${attempt + 1} of ${MAX_ATTEMPTS})`);
              continue;
            }
            if (noisy) console.log(`  steal still above ${config.maxSteal} % after ${MAX_ATTEMPTS} attempts: keeping the last`);
            rows.push(...cell);
            break;
          }
        }
      }
    }
  } finally {
    for (const [name, target] of targets) {
      try {
        await target[Symbol.asyncDispose]();
      } catch (err) {
        console.log(`${name}: ${(err as Error).message}`);
        process.exitCode = 1;
      }
    }
  }
  console.log();
  if (config.rounds > 1) console.log(`median of ${config.rounds} rounds per cell:`);
  printTable(medians(rows));
  for (const relay of ['pgward', 'pgward-js'] as const) printAgainstPgbouncer(rows, relay);
}

function readConfig(): BenchConfig {
  const seconds = positiveInt(process.env.BENCH_SECONDS ?? '15', 'BENCH_SECONDS');
  const scale = positiveInt(process.env.BENCH_SCALE ?? '10', 'BENCH_SCALE');
  const clients = (process.env.BENCH_CLIENTS ?? '1,8,32').split(',').map((c) => positiveInt(c.trim(), 'BENCH_CLIENTS'));
  const targets = (process.env.BENCH_TARGETS ?? TARGETS.join(',')).split(',').map((t) => t.trim()).filter(Boolean);
  for (const t of targets) {
    if (!(TARGETS as readonly string[]).includes(t)) throw new Error(`BENCH_TARGETS: unknown target ${t} (known: ${TARGETS.join(', ')})`);
  }
  const scripts = (process.env.BENCH_SCRIPTS ?? SCRIPTS.map((s) => s.name).join(',')).split(',').map((name) => {
    const script = SCRIPTS.find((s) => s.name === name.trim());
    if (!script) throw new Error(`BENCH_SCRIPTS: unknown script ${name} (known: ${SCRIPTS.map((s) => s.name).join(', ')})`);
    return script;
  });
  const pgwardNodeArgs = (process.env.BENCH_PGWARD_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const pgwardArgs = (process.env.BENCH_PGWARD_ARGS ?? '').split(' ').filter(Boolean);
  const rate = process.env.BENCH_RATE ? positiveInt(process.env.BENCH_RATE, 'BENCH_RATE') : undefined;
  const rounds = positiveInt(process.env.BENCH_ROUNDS ?? '1', 'BENCH_ROUNDS');
  const maxSteal = process.env.BENCH_MAX_STEAL ? positiveInt(process.env.BENCH_MAX_STEAL, 'BENCH_MAX_STEAL') : undefined;
  return { seconds, scale, clients, targets: targets as TargetName[], scripts, pgwardNodeArgs, pgwardArgs, rate, rounds, maxSteal };
}

function positiveInt(text: string, name: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name}: expected a positive integer, got ${JSON.stringify(text)}`);
  return n;
}

/**
 * Starts every target; one that cannot start gets failed rows in `rows` for all its cells and is
 * left out, so the others still run.
 */
async function startTargets(cluster: PgCluster, config: BenchConfig, rows: Row[]): Promise<Map<TargetName, Target>> {
  const started = new Map<TargetName, Target>();
  for (const name of config.targets) {
    try {
      started.set(name, await startTarget(name, cluster, config));
    } catch (err) {
      const error = (err as Error).message.split('\n')[0] ?? String(err);
      for (const script of config.scripts) {
        for (const clients of config.clients) rows.push({ target: name, script: script.name, clients, round: 1, error });
      }
      console.log(`${name}: failed: ${error}`);
    }
  }
  return started;
}

/** One row per cell: the median TPS and CPU of the rounds that ran, else the first failure. */
function medians(rows: readonly Row[]): Row[] {
  const cells = new Map<string, Row[]>();
  for (const row of rows) {
    const key = `${row.target}\0${row.script}\0${row.clients}`;
    cells.set(key, [...(cells.get(key) ?? []), row]);
  }
  return [...cells.values()].map((cell) => {
    const ok = cell.filter((r) => r.error === undefined);
    if (ok.length === 0) return cell[0]!;
    const cpu = ok.map((r) => r.cpuUsPerTxn).filter((c): c is number => c !== undefined);
    const steal = ok.map((r) => r.stealPct).filter((c): c is number => c !== undefined);
    return {
      ...ok[0]!,
      round: 0,
      tps: median(ok.map((r) => r.tps!)),
      cpuUsPerTxn: cpu.length > 0 ? median(cpu) : undefined,
      stealPct: steal.length > 0 ? median(steal) : undefined,
    };
  });
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function runOne(
  pgbench: string,
  target: Target,
  row: Row,
  scriptFlags: readonly string[],
  config: BenchConfig,
): Promise<Row> {
  const { seconds, rate } = config;
  const threads = Math.min(2, row.clients);
  const args = [...scriptFlags, '-T', String(seconds), '-c', String(row.clients), '-j', String(threads), '-M', 'simple',
    ...(rate ? ['-R', String(rate)] : []), ...connArgs(target.port)];
  const cpuBefore = target.pid !== undefined ? await cpuTicks(target.pid) : undefined;
  const machineBefore = await machineTicks();
  // pgbench vacuums first and needs a while to connect 32 clients: generous slack over -T.
  const result = await runProcess(pgbench, args, (seconds + 120) * 1000);
  const machineAfter = await machineTicks();
  const cpuAfter = target.pid !== undefined ? await cpuTicks(target.pid) : undefined;
  if (result.code !== 0) return { ...row, error: `pgbench exit ${result.code}: ${lastLines(result.stderr, 1)}` };
  const tps = parseTps(result.stdout);
  if (tps === undefined) return { ...row, error: 'no "tps =" line in pgbench output' };
  const txns = parseTransactions(result.stdout);
  const cpuUsPerTxn = cpuBefore !== undefined && cpuAfter !== undefined && txns
    ? ((cpuAfter - cpuBefore) / (await clockTicksPerSecond())) * 1e6 / txns
    : undefined;
  const stealPct = machineBefore && machineAfter && machineAfter.total > machineBefore.total
    ? (100 * (machineAfter.steal - machineBefore.steal)) / (machineAfter.total - machineBefore.total)
    : undefined;
  return { ...row, tps, cpuUsPerTxn, stealPct };
}

/** Connection flags shared by every pgbench call; database `postgres`, superuser, trust auth. */
function connArgs(port: number): string[] {
  return ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', 'postgres'];
}

/** The TPS that leaves connection set-up out: PostgreSQL ≥ 14 and ≤ 13 word it differently. */
function parseTps(stdout: string): number | undefined {
  const m = /^tps = ([\d.]+) \((?:without initial connection time|excluding connections establishing)\)/m.exec(stdout)
    ?? /^tps = ([\d.]+)/m.exec(stdout);
  return m ? Number(m[1]) : undefined;
}

function parseTransactions(stdout: string): number | undefined {
  const m = /^number of transactions actually processed: (\d+)/m.exec(stdout);
  return m ? Number(m[1]) : undefined;
}

// ---------------------------------------------------------------------------------------------
// Targets

function startTarget(name: TargetName, cluster: PgCluster, config: BenchConfig): Promise<Target> {
  switch (name) {
    case 'direct':
      return Promise.resolve({ port: cluster.port, [Symbol.asyncDispose]: async () => {} });
    case 'node-pipe':
      return startNodePipe(cluster);
    case 'pgward':
      return startPgward(cluster, config);
    case 'pgward-js':
      return startPgward(cluster, config, {}, ['--no-nativeRelay']);
    case 'pgward-traced':
      return startTracedPgward(cluster, config);
    case 'pgbouncer':
      return startPgbouncer(cluster);
  }
}

async function startPgward(cluster: PgCluster, config: BenchConfig, env: NodeJS.ProcessEnv = {}, flags: string[] = []): Promise<Target> {
  const port = await freePort();
  const service = spawnService(process.execPath, [
    ...config.pgwardNodeArgs,
    join(repoRoot, 'bin', 'pgward.js'), 'start', ...config.pgwardArgs, ...flags,
    '--auth', 'passthrough',
    '--backend', `postgres://postgres@127.0.0.1:${cluster.port}/postgres?sslmode=disable`,
    '--bindAddr', `127.0.0.1:${port}`,
    '--insecure',
  ], { cwd: repoRoot, env });
  return serviceTarget(service, port, 'pgward');
}

/**
 * The floor for any proxy written on Node's streams: each client socket piped to a backend socket
 * and back, no protocol awareness at all. What pgward costs above this row is its own work.
 */
async function startNodePipe(cluster: PgCluster): Promise<Target> {
  const port = await freePort();
  const script = `
    const net = require('node:net');
    net.createServer({ noDelay: true }, (client) => {
      const backend = net.connect({ host: '127.0.0.1', port: ${cluster.port}, noDelay: true });
      client.pipe(backend).pipe(client);
      const close = () => { client.destroy(); backend.destroy(); };
      client.on('error', close).on('close', close);
      backend.on('error', close).on('close', close);
    }).listen(${port}, '127.0.0.1');`;
  const service = spawnService(process.execPath, ['-e', script], { cwd: repoRoot });
  return serviceTarget(service, port, 'node-pipe');
}

/**
 * pgward with every session and statement traced, exporting OTLP/HTTP JSON to a sink here that
 * counts spans (so the row is known to include real export work) and answers at once.
 */
async function startTracedPgward(cluster: PgCluster, config: BenchConfig): Promise<Target> {
  let spans = 0;
  const sink = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      spans += text.match(/"spanId"/g)?.length ?? 0;
      res.setHeader('content-type', 'application/json');
      res.end('{}');
    });
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  const target = await startPgward(cluster, config, {
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(sink.address() as AddressInfo).port}`,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    OTEL_TRACES_SAMPLER: 'always_on',
    OTEL_SERVICE_NAME: 'pgward-bench',
  });
  return {
    ...target,
    [Symbol.asyncDispose]: async () => {
      await target[Symbol.asyncDispose]();
      sink.close();
      console.log(`pgward-traced: ${spans} spans exported`);
      if (spans === 0) throw new Error('pgward-traced exported no spans: tracing was not on');
    },
  };
}

async function startPgbouncer(cluster: PgCluster): Promise<Target> {
  const bin = (await whichExecutable('pgbouncer')) ?? ((await isExecutable('/usr/sbin/pgbouncer')) ? '/usr/sbin/pgbouncer' : undefined);
  if (!bin) throw new Error('pgbouncer not on PATH');
  const [port, owner] = await Promise.all([freePort(), serverOsUser()]);
  const dir = await mkdtemp(join(tmpdir(), 'pgward-bouncer-'));
  try {
    const ini = join(dir, 'pgbouncer.ini');
    await writeFile(join(dir, 'userlist.txt'), '"postgres" ""\n');
    await writeFile(ini, pgbouncerIni(cluster.port, port, join(dir, 'userlist.txt')));
    // PgBouncer refuses to run as root; as root we run it as the cluster's unprivileged user.
    if (owner) for (const p of [dir, ini, join(dir, 'userlist.txt')]) await chown(p, owner.uid, owner.gid);
    const service = spawnService(bin, [ini], { cwd: dir, uid: owner?.uid, gid: owner?.gid });
    const target = await serviceTarget(service, port, 'pgbouncer');
    return {
      ...target,
      [Symbol.asyncDispose]: async () => {
        await target[Symbol.asyncDispose]();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

function pgbouncerIni(backendPort: number, listenPort: number, authFile: string): string {
  return `[databases]
postgres = host=127.0.0.1 port=${backendPort} dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${listenPort}
; no unix socket: nothing here uses it and the default directory may not be writable
unix_socket_dir =
; trust still needs the user listed in auth_file
auth_type = trust
auth_file = ${authFile}
pool_mode = session
max_client_conn = 200
default_pool_size = 40
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
`;
}

/** Waits for the service's port; on failure stops the service and says why (its exit and output). */
async function serviceTarget(service: Service, port: number, name: string): Promise<Target> {
  try {
    await waitForPort(port, service, 20_000);
  } catch (err) {
    await service.stop();
    throw new Error(`${name}: ${(err as Error).message}`, { cause: err });
  }
  return { port, pid: service.child.pid, [Symbol.asyncDispose]: () => service.stop() };
}

// ---------------------------------------------------------------------------------------------
// Processes

interface Service {
  child: ChildProcess;
  /** Exit description once the process has ended, else undefined. */
  exited(): string | undefined;
  /** Last few KB of stdout+stderr, for failure messages. */
  output(): string;
  stop(): Promise<void>;
}

/**
 * Whether each proxy runs in a session of its own (`setsid`), as a service does, or in the bench's,
 * beside pgbench. With the kernel's autogroup scheduling (`/proc/sys/kernel/sched_autogroup_enabled`,
 * on by default on desktop and many server kernels) CPU time is shared fairly between sessions
 * before tasks: every PostgreSQL backend calls `setsid` and is a group of its own, so a proxy in
 * the bench's session shares one group's time with pgbench, which no deployment does.
 */
const PROXY_SESSION = readProxySession();

function readProxySession(): 'own' | 'shared' {
  const value = process.env.BENCH_PROXY_SESSION ?? 'own';
  if (value !== 'own' && value !== 'shared') throw new Error(`BENCH_PROXY_SESSION: expected own or shared, got ${JSON.stringify(value)}`);
  return value;
}

/** Services still running; killed synchronously if the bench itself dies first. */
const services = new Set<ChildProcess>();
const killServices = (): void => {
  for (const child of services) child.kill('SIGKILL');
};
process.once('exit', killServices);
// A signal ends the process without 'exit', and services in sessions of their own do not get the
// terminal's ^C: kill them, then let the signal take its course (the cluster helper stops the
// cluster on it once it is the only listener).
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  const onSignal = (): void => {
    killServices();
    process.removeListener(signal, onSignal);
    process.kill(process.pid, signal);
  };
  process.on(signal, onSignal);
}

function spawnService(file: string, args: string[], opts: { cwd: string; uid?: number; gid?: number; env?: NodeJS.ProcessEnv }): Service {
  const child = spawn(file, args, {
    ...opts,
    env: { ...cleanEnv(), ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: PROXY_SESSION === 'own',
  });
  services.add(child);
  let tail = '';
  const keep = (chunk: Buffer): void => {
    tail = (tail + chunk.toString('utf8')).slice(-4096);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let exit: string | undefined;
  const closed = new Promise<void>((resolve) => {
    child.once('error', (err) => {
      exit = `could not start: ${err.message}`;
      resolve();
    });
    child.once('exit', (code, signal) => {
      exit = signal ? `killed by ${signal}` : `exited with code ${code}`;
      resolve();
    });
  });
  closed.then(() => services.delete(child), () => {});
  const stop = async (): Promise<void> => {
    if (exit !== undefined) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await closed;
    clearTimeout(timer);
  };
  return { child, exited: () => exit, output: () => tail, stop };
}

async function waitForPort(port: number, service: Service, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const exit = service.exited();
    if (exit !== undefined) throw new Error(`${exit}: ${failureReason(service.output())}`);
    if (await accepts(port)) return;
    if (Date.now() > deadline) throw new Error(`port ${port} not accepting after ${timeoutMs} ms: ${failureReason(service.output())}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

interface ProcessResult {
  code: number;
  stdout: string;
  stderr: string;
}

function runProcess(file: string, args: string[], timeoutMs: number): Promise<ProcessResult> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => {
      stderr += `\nkilled after ${timeoutMs} ms`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      resolve({ code: 127, stdout, stderr: `${stderr}${err.message}` });
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 128, stdout, stderr });
    });
  });
}

/** No inherited PG* settings (they would redirect pgbench); no TLS on loopback, for every target alike. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  // libpq's PG* and the tracing OTEL_* variables would change what is measured.
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG') && !k.startsWith('OTEL_')) env[k] = v;
  return { ...env, PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '10' };
}

async function pgbenchPath(): Promise<string> {
  const onPath = await whichExecutable('pgbench');
  if (onPath) return onPath;
  const inBinDir = join(await pgBinDir(), 'pgbench');
  if (await isExecutable(inBinDir)) return inBinDir;
  throw new Error('pgbench not found (Debian: it ships with the postgresql-<v> package)');
}

async function isExecutable(path: string): Promise<boolean> {
  return access(path, fsConstants.X_OK).then(() => true, () => false);
}

/** utime + stime of a process (all its threads), in clock ticks; undefined once it is gone. */
async function cpuTicks(pid: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (stat === undefined) return undefined;
  // Field 2 (comm) may contain spaces and parentheses, so count fields from the last ')':
  // after it come field 3 (state) onwards, making utime (14) and stime (15) indexes 11 and 12.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** All CPUs' time so far from /proc/stat's first line, in ticks, and the "steal" part of it. */
async function machineTicks(): Promise<{ total: number; steal: number } | undefined> {
  const stat = await readFile('/proc/stat', 'utf8').catch(() => undefined);
  const fields = stat?.split('\n', 1)[0]!.trim().split(/\s+/);
  if (fields?.[0] !== 'cpu' || fields.length < 9) return undefined;
  // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is already
  // counted in user and nice, so the total stops at steal.
  const ticks = fields.slice(1, 9).map(Number);
  return { total: ticks.reduce((a, b) => a + b, 0), steal: ticks[7]! };
}

let ticksPromise: Promise<number> | undefined;

/** sysconf(_SC_CLK_TCK); 100 on every mainstream Linux, but ask rather than assume. */
function clockTicksPerSecond(): Promise<number> {
  ticksPromise ??= runProcess('getconf', ['CLK_TCK'], 5_000).then((r) => Number(r.stdout.trim()) || 100);
  return ticksPromise;
}

// ---------------------------------------------------------------------------------------------
// Output

const HEADER = ['target', 'script', 'clients', 'TPS', 'vs direct', 'proxy CPU µs/txn', 'steal %'];
const WIDTHS = [14, 12, 8, 10, 10, 17, 7];

function formatRow(row: Row, direct: Row | undefined): string {
  const cells = row.error !== undefined
    ? [row.target, row.script, String(row.clients), `failed: ${row.error}`]
    : [
        row.target,
        row.script,
        String(row.clients),
        row.tps!.toFixed(0),
        direct?.tps ? (row.tps! / direct.tps).toFixed(2) : '-',
        row.cpuUsPerTxn !== undefined ? row.cpuUsPerTxn.toFixed(1) : '-',
        row.stealPct !== undefined ? row.stealPct.toFixed(0) : '-',
      ];
  return cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(WIDTHS[i]!))).join(' ');
}

function printTable(rows: readonly Row[]): void {
  console.log(HEADER.map((h, i) => h.padEnd(WIDTHS[i]!)).join(' ').trimEnd());
  console.log(WIDTHS.map((w) => '-'.repeat(w)).join(' '));
  const ordered = [...rows].sort((a, b) =>
    a.script.localeCompare(b.script) || a.clients - b.clients || TARGETS.indexOf(a.target) - TARGETS.indexOf(b.target));
  for (const row of ordered) console.log(formatRow(row, directRow(rows, row)));
}

/** pgward's target (issue 2): at least this share of PgBouncer's select-only TPS in the same run. */
const PGBOUNCER_TARGET = 0.85;

/**
 * `mine` ÷ PgBouncer per round (pgward on its native relay, or on its JavaScript one), each ratio
 * from two runs measured back to back, and their median: on a shared machine the pairing matters
 * more than any one run.
 */
function printAgainstPgbouncer(rows: readonly Row[], target: 'pgward' | 'pgward-js'): void {
  const ok = rows.filter((r) => r.error === undefined && r.tps !== undefined);
  const cells = new Map<string, { script: string; clients: number; ratios: number[] }>();
  for (const mine of ok.filter((r) => r.target === target)) {
    const theirs = ok.find((r) => r.target === 'pgbouncer' && r.script === mine.script && r.clients === mine.clients && r.round === mine.round);
    if (!theirs) continue;
    const key = `${mine.script}\0${mine.clients}`;
    const cell = cells.get(key) ?? { script: mine.script, clients: mine.clients, ratios: [] };
    cell.ratios.push(mine.tps! / theirs.tps!);
    cells.set(key, cell);
  }
  if (cells.size === 0) return;
  console.log();
  console.log(`${target} ÷ PgBouncer, per round (target ≥ ${PGBOUNCER_TARGET} for select-only):`);
  for (const { script, clients, ratios } of cells.values()) {
    const met = ratios.filter((r) => r >= PGBOUNCER_TARGET).length;
    const label = `${script} at ${clients} client${clients === 1 ? '' : 's'}`;
    console.log(`  ${label.padEnd(26)} ${ratios.map((r) => r.toFixed(2)).join(' ')}` +
      (ratios.length > 1 ? `  median ${median(ratios).toFixed(2)}` : '') +
      (script === 'select-only' ? `, ${met} of ${ratios.length} at or above` : ''));
  }
}

function directRow(rows: readonly Row[], row: Row): Row | undefined {
  return rows.find((r) => r.target === 'direct' && r.script === row.script && r.clients === row.clients && r.round === row.round);
}

/** The most telling line of a dead process's output: the first error-looking one (a stack trace's message), else the last. */
function failureReason(output: string): string {
  const lines = output.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines.find((l) => /error|fatal|refus|invalid/i.test(l)) ?? lines.at(-1) ?? '(no output)';
}

function lastLines(text: string, n: number): string {
  return text.trim().split('\n').slice(-n).join(' | ');
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack ?? err.message : String(err));
  process.exitCode = 1;
});
