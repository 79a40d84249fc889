/**
 * The memory cell: what an idle session costs a proxy. A fresh instance of the target (so no
 * earlier cell's freed memory is reused and hides the growth) takes a few sessions to warm up,
 * then BENCH_IDLE_SESSIONS sessions from this process, each logged in and past one `SELECT 1`,
 * left idle; the proxy's RSS is read before they open and twice after, BENCH_SETTLE_SECONDS apart,
 * so a reading that is still moving shows.
 */
import pg from 'pg';
import type { TargetName } from './config.js';
import { rssKiB } from './proc.js';
import type { Row } from './rows.js';
import type { BenchContext } from './setup.js';
import { startTarget, type Target } from './targets.js';

const WARM_UP_SESSIONS = 50;
/** Logins in flight at once: well under pgward's --maxPendingLoginsPerAddress (20). */
const OPENING_CONCURRENCY = 8;

export async function measureIdleMemory(name: TargetName, ctx: BenchContext, round: number): Promise<Row> {
  const sessions = ctx.config.idleSessions;
  const row: Row = { family: 'memory', target: name, script: 'idle', clients: sessions, round };
  const backendsBefore = await clientBackends(ctx);
  const target = await startTarget(name, ctx, { sessions });
  try {
    if (target.pid === undefined) return { ...row, error: 'no proxy process to measure' };
    await closeAll(await openSessions(target, ctx, Math.min(WARM_UP_SESSIONS, sessions)));
    await sleep(1000);
    const before = await rssKiB(target.pid);
    const clients = await openSessions(target, ctx, sessions);
    try {
      await sleep(ctx.config.settleSeconds * 1000);
      const early = await rssKiB(target.pid);
      await sleep(ctx.config.settleSeconds * 1000);
      const late = await rssKiB(target.pid);
      if (before === undefined || early === undefined || late === undefined) return { ...row, error: 'the proxy process went away' };
      return {
        ...row,
        rssBeforeKiB: before,
        kibPerSessionEarly: (early - before) / sessions,
        kibPerSession: (late - before) / sessions,
      };
    } finally {
      await closeAll(clients);
    }
  } catch (err) {
    return { ...row, error: (err as Error).message.split('\n')[0] };
  } finally {
    await target[Symbol.asyncDispose]();
    // Its backends must be gone before the next target opens as many again.
    await waitForBackends(ctx, backendsBefore + 5, 30_000);
  }
}

/** Opens `count` sessions, OPENING_CONCURRENCY at a time; on any failure closes those opened and throws. */
async function openSessions(target: Target, ctx: BenchContext, count: number): Promise<pg.Client[]> {
  const opened: pg.Client[] = [];
  let next = 0;
  let failure: Error | undefined;
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < count) {
      next++;
      const client = new pg.Client({
        host: '127.0.0.1',
        port: target.port,
        user: 'postgres',
        database: 'postgres',
        password: target.clientEnv.PGPASSWORD,
        ssl: target.clientEnv.PGSSLMODE === 'require' ? { ca: ctx.tls!.caPem } : false,
        connectionTimeoutMillis: 30_000,
      });
      // A session the proxy ends would otherwise raise an unhandled 'error' in the bench.
      client.on('error', () => {});
      try {
        await client.connect();
        opened.push(client);
        await client.query('SELECT 1');
      } catch (err) {
        failure ??= new Error(`session ${opened.length + 1} of ${count}: ${(err as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(OPENING_CONCURRENCY, count) }, worker));
  if (failure) {
    await closeAll(opened);
    throw failure;
  }
  return opened;
}

async function closeAll(clients: readonly pg.Client[]): Promise<void> {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
}

async function clientBackends(ctx: BenchContext): Promise<number> {
  const r = await ctx.cluster.sql<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE backend_type = 'client backend'");
  return Number(r.rows[0]!.n);
}

async function waitForBackends(ctx: BenchContext, atMost: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await clientBackends(ctx)) > atMost && Date.now() < deadline) await sleep(200);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
