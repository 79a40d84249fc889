/** Reading pgbench's report, /proc files and `--help` text. Pure: text in, numbers out. */

/**
 * pgbench's TPS. PostgreSQL ≥ 14 says "without initial connection time" (≤ 13: "excluding
 * connections establishing"), which leaves set-up out; with `-C` the only line is "including
 * reconnection times", and that is the number wanted there: connections per second.
 */
export function parseTps(stdout: string): number | undefined {
  const m = /^tps = ([\d.]+) \((?:without initial connection time|excluding connections establishing)\)/m.exec(stdout)
    ?? /^tps = ([\d.]+)/m.exec(stdout);
  return m ? Number(m[1]) : undefined;
}

export function parseTransactions(stdout: string): number | undefined {
  const m = /^number of transactions actually processed: (\d+)/m.exec(stdout);
  return m ? Number(m[1]) : undefined;
}

/** pgbench ≥ 15 counts failed transactions; older ones stop a client at its first error instead. */
export function parseFailedTransactions(stdout: string): number | undefined {
  const m = /^number of failed transactions: (\d+)/m.exec(stdout);
  return m ? Number(m[1]) : undefined;
}

/** utime + stime (clock ticks) from the text of /proc/PID/stat. */
export function parseProcCpuTicks(stat: string): number | undefined {
  // Field 2 (comm) may contain spaces and parentheses, so count fields from the last ')':
  // after it come field 3 (state) onwards, making utime (14) and stime (15) indexes 11 and 12.
  const close = stat.lastIndexOf(')');
  if (close < 0) return undefined;
  const fields = stat.slice(close + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return Number.isFinite(ticks) ? ticks : undefined;
}

/** All CPUs' time from /proc/stat's first line, in ticks, and the "steal" part of it. */
export function parseMachineTicks(stat: string): { total: number; steal: number } | undefined {
  const fields = stat.split('\n', 1)[0]!.trim().split(/\s+/);
  if (fields[0] !== 'cpu' || fields.length < 9) return undefined;
  // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is already
  // counted in user and nice, so the total stops at steal.
  const ticks = fields.slice(1, 9).map(Number);
  if (ticks.some((t) => !Number.isFinite(t))) return undefined;
  return { total: ticks.reduce((a, b) => a + b, 0), steal: ticks[7]! };
}

/** Resident set size in KiB from the text of /proc/PID/status (its VmRSS line). */
export function parseVmRssKiB(status: string): number | undefined {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  return m ? Number(m[1]) : undefined;
}

/** Whether a command's `--help` text lists `flag` (as `--flag` followed by a space, `=` or the line's end). */
export function helpListsFlag(help: string, flag: string): boolean {
  const escaped = flag.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&');
  return new RegExp(`(^|[\\s,])--${escaped}(?=[\\s=]|$)`, 'm').test(help);
}
