/**
 * Where a V8 CPU profile's time went (`node --cpu-prof` output): the functions that spent it
 * themselves (self), the functions it was spent under (inclusive: each sample counted once per
 * function on its stack), and the self time per module. Used by bench/login-profile.ts.
 */

export interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export function summarizeProfile(profile: CpuProfile, top = 40): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const modules = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    total += dt;
    const node = byId.get(id)!;
    add(self, frameName(node.callFrame), dt);
    add(modules, moduleName(node.callFrame.url), dt);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const name = frameName(byId.get(at)!.callFrame);
      if (!seen.has(name)) {
        seen.add(name);
        add(inclusive, name, dt);
      }
    }
  });
  const table = (title: string, m: Map<string, number>, n: number) => {
    const rows = [...m].sort((a, b) => b[1] - a[1]).slice(0, n);
    return [`${title}:`, ...rows.map(([k, v]) => `${((100 * v) / total).toFixed(1).padStart(5)} %  ${(v / 1000).toFixed(0).padStart(7)} ms  ${k}`)].join('\n');
  };
  return [
    `${(total / 1e6).toFixed(2)} s sampled`,
    table('self time by module', modules, 25),
    table('self time by function', self, top),
    table('inclusive time by function', inclusive, top * 2),
  ].join('\n\n');
}

export function add(m: Map<string, number>, key: string, v: number): void {
  m.set(key, (m.get(key) ?? 0) + v);
}

export function frameName(f: CallFrame): string {
  const where = f.url ? ` ${shortUrl(f.url)}:${f.lineNumber + 1}` : '';
  return `${f.functionName || '(anonymous)'}${where}`;
}

function shortUrl(url: string): string {
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) return url.slice(nm + '/node_modules/'.length);
  const dist = url.indexOf('/dist/');
  if (dist >= 0) return url.slice(dist + 1);
  return url;
}

export function moduleName(url: string): string {
  if (!url) return '(native, GC, idle)';
  const short = shortUrl(url);
  if (url.includes('/node_modules/')) return short.split('/').slice(0, short.startsWith('@') ? 2 : 1).join('/');
  return short;
}
