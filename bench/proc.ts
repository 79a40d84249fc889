/** What the bench reads from /proc: a process's CPU time and memory, the machine's steal time. */
import { readFile } from 'node:fs/promises';
import { parseMachineTicks, parseProcCpuTicks, parseVmRssKiB } from './parse.js';
import { runProcess } from './processes.js';

/** utime + stime of a process (all its threads), in clock ticks; undefined once it is gone. */
export async function cpuTicks(pid: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  return stat === undefined ? undefined : parseProcCpuTicks(stat);
}

/** All CPUs' time so far, in ticks, and the part the hypervisor gave to other guests ("steal"). */
export async function machineTicks(): Promise<{ total: number; steal: number } | undefined> {
  const stat = await readFile('/proc/stat', 'utf8').catch(() => undefined);
  return stat === undefined ? undefined : parseMachineTicks(stat);
}

/** A process's resident set size in KiB; undefined once it is gone. */
export async function rssKiB(pid: number): Promise<number | undefined> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined);
  return status === undefined ? undefined : parseVmRssKiB(status);
}

let ticksPromise: Promise<number> | undefined;

/** sysconf(_SC_CLK_TCK); 100 on every mainstream Linux, but ask rather than assume. */
export function clockTicksPerSecond(): Promise<number> {
  ticksPromise ??= runProcess('getconf', ['CLK_TCK'], 5_000).then((r) => Number(r.stdout.trim()) || 100);
  return ticksPromise;
}

/** Percent of the machine's CPU time that was steal between two readings. */
export function stealPercent(
  before: { total: number; steal: number } | undefined,
  after: { total: number; steal: number } | undefined,
): number | undefined {
  if (!before || !after || after.total <= before.total) return undefined;
  return (100 * (after.steal - before.steal)) / (after.total - before.total);
}
