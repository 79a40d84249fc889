/**
 * `node dist/bench/tls-memory.js`: pgward's RSS per idle TLS session (TLS on both hops), with
 * the native TLS layer (the default) and with Node's TLS sockets (--no-nativeTls), side by side — the bench's own
 * memory cell (bench/memory.ts: a fresh proxy, BENCH_IDLE_SESSIONS sessions each past one
 * `SELECT 1`, RSS read BENCH_SETTLE_SECONDS and twice that after they opened) run once per layer,
 * and for PgBouncer with TLS on both hops when it is installed. Prints one line per target.
 */
import { readConfig } from './config.js';
import { measureIdleMemory } from './memory.js';
import { setUp } from './setup.js';

const layers = [
  { label: 'pgward-tls, native TLS', target: 'pgward-tls' as const, args: [] as string[] },
  { label: 'pgward-tls, Node TLS (--no-nativeTls)', target: 'pgward-tls' as const, args: ['--no-nativeTls'] },
  { label: 'pgbouncer-tls', target: 'pgbouncer-tls' as const, args: [] as string[] },
];

const config = { ...readConfig({ ...process.env, BENCH_CELLS: 'memory' }), families: ['memory' as const] };
await using ctx = await setUp(config);
if (!ctx.tls) throw new Error(`no TLS certificate: ${ctx.tlsProblem}`);
const base = config.pgwardArgs;
for (const { label, target, args } of layers) {
  ctx.config.pgwardArgs = [...base, ...args];
  const row = await measureIdleMemory(target, ctx, 1);
  if (row.error) console.log(`${label}: ${row.error}`);
  else {
    const per = (k: number | undefined) => (k === undefined ? '?' : k.toFixed(1));
    console.log(`${label}: ${per(row.kibPerSession)} KiB per idle session (${per(row.kibPerSessionEarly)} after ${config.settleSeconds} s; ${config.idleSessions} sessions, RSS before ${row.rssBeforeKiB} KiB)`);
  }
}
