import assert from 'node:assert/strict';

/**
 * The value of a metric in Prometheus text format, summed over the series whose labels include
 * `labels`; fails the test when no such series exists.
 */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const l = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => l[k] === v)) {
      total += Number(m[3]);
      found = true;
    }
  }
  assert.ok(found, `metric ${name}${JSON.stringify(labels)} present`);
  return total;
}

/** Fetches `url` (a /metrics endpoint) and reads one metric from it. */
export async function scrapeMetric(url: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  return metricValue(await (await fetch(url)).text(), name, labels);
}
