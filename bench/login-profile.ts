/**
 * pgward's own CPU per new connection (issue 18, "a cheap login"): a real PostgreSQL with TLS
 * and SCRAM, real `pgward start` processes (JWT login, TLS on both hops or plain TCP on both), and
 * `pgbench -n -S -C` through them with a token as PGPASSWORD; each connection is one transaction.
 * The CPU a pgward process spent (/proc/<pid>/stat utime + stime) is divided by the connections
 * pgbench made. Several builds (repository roots with a built dist/) can be compared in one run:
 * they are measured in turn, repeat after repeat, so a noisy machine hits them alike. pgward writes
 * no line per session (`--no-logConnections --no-logDisconnections`), as in `npm run bench`.
 *
 *   node dist/bench/login-profile.js
 *   LOGIN_BUILDS=/tmp/pgward-base,. LOGIN_REPEATS=5 node dist/bench/login-profile.js
 *
 * Env: LOGIN_SECONDS (10, per measurement), LOGIN_REPEATS (3), LOGIN_CLIENTS (4, pgbench -c; -j 2),
 * LOGIN_WARMUP (1500 connections through each pgward before measuring),
 * LOGIN_VARIANTS (tls,plain; also tls-rsa: pgward's client certificate is RSA-2048 instead of
 * ECDSA P-256, client-tls and backend-tls: TLS on one hop only), LOGIN_BUILDS (comma-separated repository roots, default this one), LOGIN_PGWARD_ARGS (more `pgward start` flags), LOGIN_NODE_ARGS (Node options for pgward,
 * e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof": the profile is written when pgward exits at the end),
 * LOGIN_PERF_DIR (`perf record -g` of pgward during each measurement, into this directory; with
 * LOGIN_NODE_ARGS=--perf-basic-prof perf names the JavaScript functions too), LOGIN_OUTPUT_DIR
 * (pgward's stdout, its log and what Node options such as --trace-deopt print, into files there).
 * LOGIN_CALLGRIND (a directory: pgward runs under `valgrind --tool=callgrind`, instrumented only
 * while measured; instructions per connection, main thread and all threads, are printed — steady
 * on a loaded machine where CPU time is not; pair with LOGIN_CONNECTIONS), LOGIN_CONNECTIONS (a
 * fixed number of connections per measurement instead of LOGIN_SECONDS). LOGIN_ALLOC (a directory:
 * each pgward samples its JavaScript allocations, objects already collected included, only while
 * measured, through the preload bench/alloc-sampler.ts; bytes allocated per connection and the
 * functions that allocated most are printed, the profiles are left there as .heapprofile files;
 * with LOGIN_ALLOC_SURVIVORS=1 only what outlived a scavenge: what a login leaves to V8's old
 * generation). A build may carry Node options of its own after a `#`, for comparing them in turn:
 * `LOGIN_BUILDS='.,.#--max-semi-space-size=16'`.
 * `node dist/bench/login-profile.js summarize FILE.cpuprofile` prints where a profile's time went.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { TestCA } from '../test/helpers/certs.js';
import { PgCluster } from '../test/helpers/pg-cluster.js';
import { summarizeProfile } from './cpuprofile-summary.js';
import { summarizeHeapProfile, type HeapProfile } from './heapprofile-summary.js';

const execFileAsync = promisify(execFile);
const thisRoot = fileURLToPath(new URL('../../', import.meta.url));

interface Variant {
  name: string;
  /** TLS between the client and pgward, with this kind of certificate. */
  clientTls?: 'ec' | 'rsa';
  backendTls: boolean;
}

const VARIANTS: readonly Variant[] = [
  { name: 'tls', clientTls: 'ec', backendTls: true },
  { name: 'tls-rsa', clientTls: 'rsa', backendTls: true },
  { name: 'plain', backendTls: false },
  // One hop with TLS each: their differences from `plain` split the cost of `tls` by hop.
  { name: 'client-tls', clientTls: 'ec', backendTls: false },
  { name: 'backend-tls', backendTls: true },
];

interface Settings {
  seconds: number;
  repeats: number;
  clients: number;
  /** Connections through each pgward before measuring. */
  warmup: number;
  variants: Variant[];
  /** Repository roots, each with `#` and Node options of its own (space-separated: LOGIN_BUILDS splits at commas only). */
  builds: string[];
  pgwardArgs: string[];
  nodeArgs: string[];
  /** pgward's stdout (its log, and whatever LOGIN_NODE_ARGS make Node print) goes to a file here. */
  outputDir?: string;
  /** `perf record` each measurement into this directory. */
  perfDir?: string;
  /** Run pgward under callgrind, its dumps into this directory. */
  callgrindDir?: string;
  /** Connections per measurement (instead of `seconds`). */
  connections?: number;
  /** Sample each measurement's allocations (bench/alloc-sampler.ts) into this directory. */
  allocDir?: string;
  /** With allocDir: sample only what outlives a scavenge. */
  allocSurvivors: boolean;
}

interface Measurement {
  build: string;
  variant: string;
  connections: number;
  failed: number;
  perSecond: number;
  /** pgward's CPU (user + system) per connection, milliseconds. */
  cpuMs: number;
  /** Under callgrind: instructions per connection, main thread and all threads. */
  instructions?: { main: number; all: number };
  /** With LOGIN_ALLOC: JavaScript bytes allocated per connection, and where. */
  alloc?: { bytes: number; text: string };
}

interface Fixture {
  cluster: PgCluster;
  dir: string;
  keyPath: string;
  backends: { tls: string; plain: string };
  certs: { ec: { cert: string; key: string }; rsa: { cert: string; key: string } };
  token: string;
}

async function main(): Promise<void> {
  if (process.argv[2] === 'summarize') {
    for (const file of process.argv.slice(3)) console.log(summarizeProfile(JSON.parse(await readFile(file, 'utf8'))));
    return;
  }
  const settings = readSettings();
  const fixture = await setUp();
  const pgwards: { build: string; variant: Variant; proc: Pgward }[] = [];
  try {
    for (const build of settings.builds) {
      for (const variant of settings.variants) pgwards.push({ build, variant, proc: await startPgward(build, variant, fixture, settings) });
    }
    console.log(`pgbench -n -S -C -c ${settings.clients} -j 2 -T ${settings.seconds}; ${settings.repeats} repeats; builds: ${settings.builds.join(', ')}`);
    // V8 compiles the login path as it gets hot, connection after connection: measured before it
    // has, at a few dozen connections a second, a tenth of the CPU is the compiler's.
    console.log(`warming up: ${settings.warmup} connections through each pgward`);
    for (const p of pgwards) await runPgbench(p.proc.port, p.variant, fixture, settings.clients, { connections: settings.warmup });
    const results: Measurement[] = [];
    for (let r = 1; r <= settings.repeats; r++) {
      for (const { build, variant, proc } of pgwards) {
        const m = await measure(proc, build, variant, fixture, settings);
        results.push(m);
        console.log(`#${r} ${pad(variant.name, 11)} ${pad(shortBuild(build), 22)} ${m.perSecond.toFixed(0).padStart(5)} conn/s  ` +
          `${m.cpuMs.toFixed(3)} ms CPU/conn  (${m.connections} connections, ${m.failed} failed)` +
          (m.instructions ? `  ${(m.instructions.main / 1e6).toFixed(3)} M / ${(m.instructions.all / 1e6).toFixed(3)} M instructions/conn (main / all threads)` : '') +
          (m.alloc ? `  ${(m.alloc.bytes / 1024).toFixed(1)} KiB ${settings.allocSurvivors ? 'outlived a scavenge' : 'allocated'}/conn` : ''));
        if (m.alloc && r === settings.repeats) console.log(m.alloc.text.replace(/^/gm, '    '));
      }
    }
    console.log('\nmedian [min – max] of pgward CPU per connection:');
    for (const { build, variant } of pgwards) {
      const mine = results.filter((m) => m.build === build && m.variant === variant.name);
      const cpu = mine.map((m) => m.cpuMs).sort((a, b) => a - b);
      const rate = mine.map((m) => m.perSecond).sort((a, b) => a - b);
      console.log(`${pad(variant.name, 11)} ${pad(shortBuild(build), 22)} ${median(cpu).toFixed(3)} ms [${cpu[0]!.toFixed(3)} – ${cpu.at(-1)!.toFixed(3)}]` +
        `   ${median(rate).toFixed(0)} conn/s [${rate[0]!.toFixed(0)} – ${rate.at(-1)!.toFixed(0)}]`);
    }
  } finally {
    for (const p of pgwards) await p.proc.stop();
    await fixture.cluster.stop();
    await rm(fixture.dir, { recursive: true, force: true });
  }
}

function readSettings(): Settings {
  const int = (name: string, fallback: number) => {
    const n = Number(process.env[name] ?? fallback);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`${name}: expected a positive integer`);
    return n;
  };
  const list = (name: string, fallback: string, at: string | RegExp = /[ ,]/) => (process.env[name] ?? fallback).split(at).map((s) => s.trim()).filter(Boolean);
  const variants = list('LOGIN_VARIANTS', 'tls,plain').map((name) => {
    const v = VARIANTS.find((x) => x.name === name);
    if (!v) throw new Error(`LOGIN_VARIANTS: unknown variant ${name} (known: ${VARIANTS.map((x) => x.name).join(', ')})`);
    return v;
  });
  return {
    seconds: int('LOGIN_SECONDS', 10),
    repeats: int('LOGIN_REPEATS', 3),
    clients: int('LOGIN_CLIENTS', 4),
    warmup: int('LOGIN_WARMUP', 1500),
    variants,
    builds: list('LOGIN_BUILDS', thisRoot, ',').map((b) => resolve(rootOf(b)) + b.slice(rootOf(b).length)),
    pgwardArgs: (process.env.LOGIN_PGWARD_ARGS ?? '').split(' ').filter(Boolean),
    nodeArgs: (process.env.LOGIN_NODE_ARGS ?? '').split(' ').filter(Boolean),
    perfDir: process.env.LOGIN_PERF_DIR,
    outputDir: process.env.LOGIN_OUTPUT_DIR,
    callgrindDir: process.env.LOGIN_CALLGRIND,
    connections: process.env.LOGIN_CONNECTIONS ? int('LOGIN_CONNECTIONS', 1) : undefined,
    allocDir: process.env.LOGIN_ALLOC ? resolve(process.env.LOGIN_ALLOC) : undefined,
    allocSurvivors: process.env.LOGIN_ALLOC_SURVIVORS === '1',
  };
}

/** PostgreSQL with TLS and SCRAM (the default 4096 iterations), pgbench tables, keys, a token. */
async function setUp(): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), 'pgward-login-'));
  const ca = await TestCA.create(join(dir));
  const pgCert = await ca.issue('postgres');
  const cluster = await PgCluster.start({
    ssl: pgCert,
    hba: ['hostssl all app 127.0.0.1/32 scram-sha-256', 'hostnossl all app 127.0.0.1/32 scram-sha-256', 'host all all 127.0.0.1/32 trust'],
    users: [{ name: 'app', password: 'app-password' }],
    maxConnections: 60,
  });
  await execFileAsync('pgbench', ['-i', '-q', '-s', '1', '-h', cluster.socketDir, '-p', String(cluster.port), '-U', 'postgres', 'postgres']);
  await cluster.sql('GRANT SELECT ON ALL TABLES IN SCHEMA public TO app');
  const signer = await generateKeyPair('ES256', { extractable: true });
  const keyPath = join(dir, 'signing.pem');
  await writeFile(keyPath, await exportSPKI(signer.publicKey));
  const token = await new SignJWT({ sub: 'app' }).setProtectedHeader({ alg: 'ES256' }).setIssuedAt().setExpirationTime('2h').sign(signer.privateKey);
  const backend = (sslmode: string) => join(dir, `backends-${sslmode}.json`);
  for (const sslmode of ['require', 'disable']) {
    await writeFile(backend(sslmode), JSON.stringify({ app: `postgres://app:app-password@127.0.0.1:${cluster.port}/postgres?sslmode=${sslmode}` }));
  }
  const ec = { cert: join(dir, 'ec.crt'), key: join(dir, 'ec.key') };
  const rsa = { cert: join(dir, 'rsa.crt'), key: join(dir, 'rsa.key') };
  await selfSigned(ec, ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1']);
  await selfSigned(rsa, ['-newkey', 'rsa:2048']);
  return { cluster, dir, keyPath, backends: { tls: backend('require'), plain: backend('disable') }, certs: { ec, rsa }, token };
}

function selfSigned(paths: { cert: string; key: string }, keyArgs: string[]): Promise<unknown> {
  return execFileAsync('openssl', ['req', '-x509', ...keyArgs, '-nodes', '-keyout', paths.key, '-out', paths.cert,
    '-days', '7', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1']);
}

interface Pgward {
  port: number;
  pid: number;
  stop(): Promise<void>;
}

async function startPgward(build: string, variant: Variant, fixture: Fixture, settings: Settings): Promise<Pgward> {
  const tls = variant.clientTls ? ['--bindCert', fixture.certs[variant.clientTls].cert, '--bindKey', fixture.certs[variant.clientTls].key] : ['--insecure'];
  const args = [
    // No line per session, as the churn cell of `npm run bench` runs it (bench/targets.ts).
    ...settings.nodeArgs, ...buildNodeArgs(build), ...(settings.allocDir ? ['--import', join(thisRoot, 'dist', 'bench', 'alloc-sampler.js')] : []),
    join(rootOf(build), 'bin', 'pgward.js'), 'start', '--no-logConnections', '--no-logDisconnections',
    '--bindAddr', '127.0.0.1:0', '--logFormat', 'json',
    '--signingKeys', fixture.keyPath, '--algorithms', 'ES256',
    '--backends', variant.backendTls ? fixture.backends.tls : fixture.backends.plain,
    ...tls, ...settings.pgwardArgs,
  ];
  const tag = build.replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '');
  const command = settings.callgrindDir ? 'valgrind' : process.execPath;
  if (settings.callgrindDir) {
    args.unshift('--tool=callgrind', '--instr-atstart=no', '--separate-threads=yes', `--callgrind-out-file=${join(settings.callgrindDir, `cg-${variant.name}-${tag}.%p`)}`, process.execPath);
  }
  const env = settings.allocDir
    ? { ...process.env, PGWARD_ALLOC_DIR: settings.allocDir, PGWARD_ALLOC_SURVIVORS: settings.allocSurvivors ? '1' : '0' }
    : process.env;
  const child = spawn(command, args, { cwd: rootOf(build), env, stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  if (settings.outputDir) child.stdout!.pipe(createWriteStream(join(settings.outputDir, `pgward-${variant.name}-${child.pid}.log`)));
  const port = await listeningPort(child);
  return {
    port,
    pid: child.pid!,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Reads pgward's JSON log until "pgward listening", then keeps draining it (a full pipe would stall pgward). */
function listeningPort(child: ChildProcess): Promise<number> {
  return new Promise((resolvePort, reject) => {
    let buf = '';
    let found = false;
    child.stdout!.on('data', (d: Buffer) => {
      if (found) return;
      buf += d.toString('utf8');
      const m = /"msg":"pgward listening"[^\n]*"address":"[^"]*:(\d+)"/.exec(buf);
      if (m) {
        found = true;
        resolvePort(Number(m[1]));
      }
    });
    child.once('exit', (code) => reject(new Error(`pgward exited (${code}) before listening: ${buf.slice(-2000)}`)));
  });
}

async function measure(proc: Pgward, build: string, variant: Variant, fixture: Fixture, settings: Settings): Promise<Measurement> {
  const perf = settings.perfDir ? startPerf(proc.pid, join(settings.perfDir, `${variant.name}-${proc.pid}.data`)) : undefined;
  const before = await cpuSeconds(proc.pid);
  const started = process.hrtime.bigint();
  const callgrind = settings.callgrindDir;
  if (callgrind) {
    // Instrumented from the first measurement on (switching it off and on again spoils the counts), zeroed before each.
    await execFileAsync('callgrind_control', ['-i', 'on', String(proc.pid)]);
    await execFileAsync('callgrind_control', ['-z', String(proc.pid)]);
  }
  const amount = settings.connections ? { connections: settings.connections } : { seconds: settings.seconds };
  const sampler = settings.allocDir ? await startSampling(settings.allocDir, proc.pid) : undefined;
  const out = await runPgbench(proc.port, variant, fixture, settings.clients, amount);
  const heapProfile = await sampler?.stop();
  await perf?.stop();
  const instructions = callgrind ? await dumpInstructions(callgrind, proc.pid) : undefined;
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = (await cpuSeconds(proc.pid)) - before;
  const connections = Number(/^number of transactions actually processed: (\d+)/m.exec(out)?.[1] ?? NaN);
  const failed = Number(/^number of failed transactions: (\d+)/m.exec(out)?.[1] ?? 0);
  if (!(connections > 0)) throw new Error(`pgbench made no connections through ${variant.name}:\n${out}`);
  const perConnection = instructions && { main: instructions.main / connections, all: instructions.all / connections };
  const alloc = heapProfile && summarizeHeapProfile(heapProfile, connections);
  return { build, variant: variant.name, connections, failed, perSecond: connections / elapsed, cpuMs: (cpu * 1000) / connections, instructions: perConnection, alloc };
}

/** Starts pgward's allocation sampling (bench/alloc-sampler.ts: SIGUSR2 on, SIGUSR2 off and write). */
async function startSampling(dir: string, pid: number): Promise<{ stop(): Promise<HeapProfile> }> {
  const started = join(dir, `alloc-${pid}.started`);
  await rm(started, { force: true });
  process.kill(pid, 'SIGUSR2');
  await appears(started);
  const taken = (await readdir(dir)).filter((f) => f.startsWith(`alloc-${pid}-`) && f.endsWith('.heapprofile')).length;
  return {
    stop: async () => {
      process.kill(pid, 'SIGUSR2');
      const file = join(dir, `alloc-${pid}-${taken + 1}.heapprofile`);
      await appears(file);
      return JSON.parse(await readFile(file, 'utf8')) as HeapProfile;
    },
  };
}

async function appears(file: string): Promise<void> {
  for (let waited = 0; waited < 60_000; waited += 50) {
    if (await stat(file).then(() => true, () => false)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${file} did not appear within a minute`);
}

/** Dumps callgrind's counts since they were zeroed: instructions of the main thread and of all. */
async function dumpInstructions(dir: string, pid: number): Promise<{ main: number; all: number }> {
  const before = new Set(await readdir(dir));
  await execFileAsync('callgrind_control', ['-d', String(pid)]);
  const dumped = (await readdir(dir)).filter((f) => !before.has(f) && f.includes(`.${pid}.`));
  let main = 0;
  let all = 0;
  for (const file of dumped) {
    const ir = Number(/^summary: (\d+)/m.exec(await readFile(join(dir, file), 'utf8'))?.[1] ?? 0);
    all += ir;
    if (file.endsWith('-01')) main += ir;
  }
  return { main, all };
}

/** pgbench -C: each transaction on a new connection, for a time or a number of connections. */
async function runPgbench(port: number, variant: Variant, fixture: Fixture, clients: number, run: { seconds: number } | { connections: number }): Promise<string> {
  const env = { ...process.env, PGPASSWORD: fixture.token, PGSSLMODE: variant.clientTls ? 'require' : 'disable', PGCONNECT_TIMEOUT: '10' };
  const amount = 'seconds' in run ? ['-T', String(run.seconds)] : ['-t', String(Math.ceil(run.connections / clients))];
  const args = ['-n', '-S', '-C', '-c', String(clients), '-j', '2', ...amount, '-h', '127.0.0.1', '-p', String(port), '-U', 'app', 'postgres'];
  const { stdout } = await execFileAsync('pgbench', args, { env, maxBuffer: 16 << 20, timeout: 600_000 });
  return stdout;
}

/** Samples the process's CPU (user and kernel, with call graphs) until stopped; pair with LOGIN_NODE_ARGS=--perf-basic-prof. */
function startPerf(pid: number, output: string): { stop(): Promise<void> } {
  const child = spawn('perf', ['record', '-F', '997', '--call-graph', process.env.LOGIN_PERF_CALL_GRAPH ?? 'dwarf,16384', '-p', String(pid), '-o', output], { stdio: 'ignore' });
  const exited = new Promise((r) => child.once('exit', r));
  return {
    stop: async () => {
      child.kill('SIGINT');
      await exited;
    },
  };
}

/** utime + stime of a process, in seconds. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of proc(5), counted from the state (field 3) at index 0.
  return (Number(fields[11]) + Number(fields[12])) / clockTicks;
}

const clockTicks = Number((await execFileAsync('getconf', ['CLK_TCK'])).stdout.trim()) || 100;

function median(sorted: readonly number[]): number {
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

function shortBuild(build: string): string {
  const root = rootOf(build);
  return resolve(root) === resolve(thisRoot) ? `this build${build.slice(root.length)}` : build;
}

/** A build's repository root: LOGIN_BUILDS's entry before any `#`. */
function rootOf(build: string): string {
  const at = build.indexOf('#');
  return at < 0 ? build : build.slice(0, at);
}

/** The Node options a build carries after its `#`, for pgward's process alone. */
function buildNodeArgs(build: string): string[] {
  return build.slice(rootOf(build).length + 1).split(' ').filter(Boolean);
}

await main();
