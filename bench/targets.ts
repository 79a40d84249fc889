/**
 * The servers pgbench and the memory cell connect to: PostgreSQL itself, a bare Node pipe, pgward
 * in its variants, PgBouncer (bench/pgbouncer.ts). Every proxy is a process of its own whose CPU
 * time and memory the cells read from /proc.
 */
import { open, rm, stat, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { freePort } from '../test/helpers/ports.js';
import { TARGET_TLS, type TargetName } from './config.js';
import { startPgbouncer } from './pgbouncer.js';
import { spawnService } from './processes.js';
import { pgwardBin, repoRoot, type BenchContext } from './setup.js';
import { clientEnv, serviceTarget, SkipTarget, SMALL, type Capacity, type Target } from './target-base.js';

export { SkipTarget, type Capacity, type Target } from './target-base.js';

export async function startTarget(name: TargetName, ctx: BenchContext, capacity: Capacity = SMALL): Promise<Target> {
  if (TARGET_TLS[name] !== 'none' && !ctx.tls) throw new SkipTarget(`needs TLS, and ${ctx.tlsProblem ?? 'no certificate'}`);
  switch (name) {
    case 'direct':
    case 'direct-tls':
      return { name, port: ctx.cluster.port, clientEnv: clientEnv(name), [Symbol.asyncDispose]: async () => {} };
    case 'node-pipe':
      return startNodePipe(ctx);
    case 'pgward':
    case 'pgward-tls':
    case 'pgward-tls-client':
      return startPgward(name, ctx, capacity);
    case 'pgward-js':
      return startPgward(name, ctx, capacity, ['--no-nativeRelay']);
    case 'pgward-tls-node':
      // The fallback: Node's TLS sockets, carried in JavaScript.
      return startPgward(name, ctx, capacity, ['--no-nativeTls']);
    case 'pgward-nopool':
    case 'pgward-nopool-tls':
      if (!ctx.pgwardFlags.poolMode) {
        throw new SkipTarget('this pgward has no --poolMode flag yet (backend pooling not built): the pgward rows already open a backend connection per session');
      }
      return startPgward(name, ctx, capacity, ['--poolMode', 'off']);
    case 'pgward-traced':
      return startTracedPgward(ctx, capacity);
    case 'pgward-querylog':
      return startQueryLogPgward(ctx, capacity);
    case 'pgward-observer':
      return startObserverPgward(ctx, capacity);
    case 'pgbouncer':
    case 'pgbouncer-tls':
      return startPgbouncer(name, ctx, capacity);
  }
}

/**
 * pgward with JWT logins (the token from setUp as every client's password), to the one backend,
 * over TLS where the target's name says so: `--bindCert/--bindKey` to clients, `sslmode=require`
 * to PostgreSQL.
 */
async function startPgward(
  name: TargetName,
  ctx: BenchContext,
  capacity: Capacity,
  flags: string[] = [],
  env: NodeJS.ProcessEnv = {},
): Promise<Target> {
  const hops = TARGET_TLS[name];
  const port = await freePort();
  const backends = join(ctx.workDir, `backends-${hops === 'both' ? 'tls' : 'plain'}.json`);
  const sslmode = hops === 'both' ? 'require' : 'disable';
  await writeFile(backends, JSON.stringify({ postgres: `postgres://postgres@127.0.0.1:${ctx.cluster.port}/postgres?sslmode=${sslmode}` }));
  const listen = hops === 'none' ? ['--insecure'] : ['--bindCert', ctx.tls!.cert, '--bindKey', ctx.tls!.key];
  // Past the defaults only where the memory cell needs room: --maxConnections 1000, pool maxSize 100 (SPEC §8).
  const sized: string[] = [];
  if (capacity.sessions + 100 > 1000) sized.push('--maxConnections', String(capacity.sessions + 100));
  if (ctx.pgwardFlags.poolMaxSize && capacity.sessions + 10 > 100) sized.push('--poolMaxSize', String(capacity.sessions + 100));
  const service = spawnService(process.execPath, [
    ...ctx.config.pgwardNodeArgs,
    // No line per session, as PgBouncer is run here (log_connections = 0, log_disconnections = 0).
    pgwardBin, 'start', '--no-logConnections', '--no-logDisconnections', ...ctx.config.pgwardArgs, ...flags,
    '--auth', 'jwt',
    '--signingKeys', ctx.signingKey,
    '--backends', backends,
    '--bindAddr', `127.0.0.1:${port}`,
    ...listen,
    ...sized,
  ], { cwd: repoRoot, env, ownSession: ctx.config.proxySession === 'own' });
  return serviceTarget(name, service, port, clientEnv(name, ctx.token));
}

/**
 * The floor for any proxy written on Node's streams: each client socket piped to a backend socket
 * and back, no protocol awareness at all. What pgward costs above this row is its own work.
 */
async function startNodePipe(ctx: BenchContext): Promise<Target> {
  const port = await freePort();
  const script = `
    const net = require('node:net');
    net.createServer({ noDelay: true }, (client) => {
      const backend = net.connect({ host: '127.0.0.1', port: ${ctx.cluster.port}, noDelay: true });
      client.pipe(backend).pipe(client);
      const close = () => { client.destroy(); backend.destroy(); };
      client.on('error', close).on('close', close);
      backend.on('error', close).on('close', close);
    }).listen(${port}, '127.0.0.1');`;
  const service = spawnService(process.execPath, ['-e', script], { cwd: repoRoot, ownSession: ctx.config.proxySession === 'own' });
  return serviceTarget('node-pipe', service, port, clientEnv('node-pipe'));
}

/**
 * pgward with every session and statement traced, exporting OTLP/HTTP JSON to a sink here that
 * counts spans (so the row is known to include real export work) and answers at once.
 */
async function startTracedPgward(ctx: BenchContext, capacity: Capacity): Promise<Target> {
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
  try {
    const target = await startPgward('pgward-traced', ctx, capacity, [], {
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
  } catch (err) {
    sink.close();
    throw err;
  }
}

/**
 * pgward with `pipeline: [query-log, drain-gate]` (query-log's defaults: every statement, redacted),
 * logging to a file as a service would rather than to a pipe the bench reads.
 */
function startQueryLogPgward(ctx: BenchContext, capacity: Capacity): Promise<Target> {
  // A text-format line: time, level, event name, fields.
  return startLoggingPgward('pgward-querylog', ctx, capacity, 'pipeline: [query-log, drain-gate]\n', /^\S+ INFO +query /m, 'query-log was not on');
}

/**
 * pgward with `pipeline: [noop-observer, drain-gate]`: bench/noop-observer.ts declares query-log's
 * messages and does nothing with them, logging at each session's close how many it was shown.
 */
function startObserverPgward(ctx: BenchContext, capacity: Capacity): Promise<Target> {
  const plugin = join(repoRoot, 'dist', 'bench', 'noop-observer.js');
  const config = `plugins: [${JSON.stringify(plugin)}]\npipeline: [noop-observer, drain-gate]\n`;
  return startLoggingPgward('pgward-observer', ctx, capacity, config, /INFO +noop-observer: messages seen .*seen=[1-9]/m, 'the observer saw nothing');
}

/**
 * pgward with `config` (YAML), logging to a file. The file is removed at the end; its size is
 * reported, and a file without a line matching `proof` fails the target with `missing`.
 */
async function startLoggingPgward(name: TargetName, ctx: BenchContext, capacity: Capacity, config: string, proof: RegExp, missing: string): Promise<Target> {
  const configFile = join(ctx.workDir, `${name}.yaml`);
  const log = join(ctx.workDir, `${name}.log`);
  await writeFile(configFile, config);
  const target = await startPgward(name, ctx, capacity, ['--config', configFile, '--logDestination', log]);
  return {
    ...target,
    [Symbol.asyncDispose]: async () => {
      await target[Symbol.asyncDispose]();
      const size = (await stat(log).catch(() => undefined))?.size ?? 0;
      const head = await readHead(log, 1 << 20);
      await rm(log, { force: true });
      console.log(`${name}: ${(size / 1048576).toFixed(1)} MiB of log written`);
      if (!proof.test(head)) throw new Error(`${name} logged no proof of its pipeline: ${missing}`);
    },
  };
}

async function readHead(path: string, bytes: number): Promise<string> {
  const file = await open(path).catch(() => undefined);
  if (!file) return '';
  try {
    const buffer = Buffer.alloc(bytes);
    const { bytesRead } = await file.read(buffer, 0, bytes, 0);
    return buffer.subarray(0, bytesRead).toString('utf8');
  } finally {
    await file.close();
  }
}
