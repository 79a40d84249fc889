/**
 * Where a V8 sampling heap profile's bytes went (HeapProfiler.stopSampling's profile, as
 * bench/alloc-sampler.ts writes it): the total, and the bytes allocated by each function itself
 * (self size summed per function name, script and line) and per module. Used by
 * bench/login-profile.ts with LOGIN_ALLOC, which divides by the connections made meanwhile, and
 * bench/query-log-cost.ts with QLOG_ALLOC, by the statements.
 */
import { add, frameName, moduleName, type CallFrame } from './cpuprofile-summary.js';

interface HeapNode {
  callFrame: CallFrame;
  selfSize: number;
  children?: HeapNode[];
}

export interface HeapProfile {
  head: HeapNode;
}

/** Bytes sampled in all; `per` divides every figure (connections, to print bytes per connection; or per `unit`). */
export function summarizeHeapProfile(profile: HeapProfile, per = 1, top = 15, unit = 'connection'): { bytes: number; text: string } {
  const self = new Map<string, number>();
  const modules = new Map<string, number>();
  let total = 0;
  const walk = (node: HeapNode) => {
    if (node.selfSize) {
      total += node.selfSize;
      add(self, frameName(node.callFrame), node.selfSize);
      add(modules, moduleName(node.callFrame.url), node.selfSize);
    }
    for (const child of node.children ?? []) walk(child);
  };
  walk(profile.head);
  const table = (title: string, m: Map<string, number>, n: number) => {
    const rows = [...m].sort((a, b) => b[1] - a[1]).slice(0, n);
    return [`${title}:`, ...rows.map(([k, v]) => `${(v / per).toFixed(0).padStart(8)} B  ${((100 * v) / total).toFixed(1).padStart(5)} %  ${k}`)].join('\n');
  };
  const text = [
    `${(total / per).toFixed(0)} bytes allocated${per === 1 ? '' : ` per ${unit}`}`,
    table('self bytes by module', modules, 10),
    table('self bytes by function', self, top),
  ].join('\n\n');
  return { bytes: total / per, text };
}
