// The one-way floors of src/: every import in src/ and plugins/ is checked against the dependency
// table in README.md's "Architecture" section (the authority: change it there), and no file
// reaches itself through its imports.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import ts from 'typescript';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));

/** A row's folder key: `util` for `src/util/`, `src/*.ts` for the entry points, `plugins/`. */
type Floor = string;
interface Row {
  floor: Floor;
  /** The folders this one may import; `above` for "everything above". */
  imports: readonly Floor[] | 'above';
}

/**
 * Imports that break a floor and cannot be fixed yet, each with why. Every one must still occur
 * (the test fails on a stale entry, so that it is removed once fixed).
 */
const KNOWN_EXCEPTIONS: readonly { from: string; to: string; why: string }[] = [];

/** The Architecture section's `| folder | owns | imports from |` table, in order. */
function readFloorTable(): Row[] {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Architecture'));
  const lines = section.split('\n');
  const head = lines.findIndex((l) => /^\|\s*folder\s*\|\s*owns\s*\|\s*imports from\s*\|$/.test(l));
  assert.ok(head >= 0, 'README.md Architecture has the | folder | owns | imports from | table');
  const rows: Row[] = [];
  for (const line of lines.slice(head + 2)) {
    if (!line.startsWith('|')) break;
    const cells = line.split('|').slice(1, -1).map((c) => c.trim());
    const folder = /^`([^`]+)`$/.exec(cells[0]!)?.[1];
    assert.ok(folder, `a folder in backticks in: ${line}`);
    if (folder === 'native/') continue; // C, no imports of ours
    const floor = folder === 'src/*.ts' || folder === 'plugins/' ? folder : /^src\/([a-z-]+)\/$/.exec(folder)?.[1];
    assert.ok(floor, `a src/<folder>/, src/*.ts or plugins/ row, not ${folder}`);
    const cell = cells[cells.length - 1]!;
    let imports: Row['imports'];
    if (cell === '—') imports = [];
    else if (cell === 'everything above') imports = 'above';
    else if (floor === 'plugins/') imports = ['src/*.ts'];
    else imports = cell.split(',').map((f) => f.trim());
    rows.push({ floor, imports });
  }
  return rows;
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => join(dir, f));
}

/** Repository-relative paths of the files `file` imports by relative path (type-only and dynamic imports too). */
function importsOf(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
  return info.importedFiles
    .map((f) => f.fileName)
    // (A require() of the native addon is not a module of ours.)
    .filter((spec) => spec.startsWith('.') && spec.endsWith('.js'))
    .map((spec) => relative(REPO, resolve(dirname(file), spec)).split(sep).join('/').replace(/\.js$/, '.ts'));
}

/** The floor a repository-relative file sits on. */
function floorOf(path: string): Floor {
  const parts = path.split('/');
  if (parts[0] === 'plugins') return 'plugins/';
  if (parts[0] === 'src') return parts.length === 2 ? 'src/*.ts' : parts[1]!;
  return parts[0]!;
}

const table = readFloorTable();
const files = [...tsFiles(join(REPO, 'src')), ...tsFiles(join(REPO, 'plugins'))].map((f) => relative(REPO, f).split(sep).join('/'));
const graph = new Map(files.map((f) => [f, importsOf(join(REPO, f))]));

/** Imports that the table does not allow, as readable lines. */
function floorViolations(imports: ReadonlyMap<string, readonly string[]>): string[] {
  const order = new Map(table.map((r, i) => [r.floor, i]));
  const violations: string[] = [];
  for (const [from, targets] of imports) {
    const row = table[order.get(floorOf(from)) ?? -1];
    if (!row) continue; // reported by "every folder of src/ has a row"
    for (const to of targets) {
      const target = floorOf(to);
      if (from.startsWith('plugins/')) {
        // A shipped plugin: its own folder, or pgward's public entry points.
        if (to.split('/')[1] === from.split('/')[1] || target === 'src/*.ts') continue;
      } else if (target === row.floor) continue;
      else if (row.imports === 'above' ? (order.get(target) ?? Infinity) < order.get(row.floor)! : row.imports.includes(target)) continue;
      if (KNOWN_EXCEPTIONS.some((e) => e.from === from && e.to === to)) continue;
      const allowed = row.imports === 'above' ? 'everything above it' : row.imports.join(', ') || 'nothing';
      violations.push(`${from} imports ${to} (${row.floor} may import ${allowed})`);
    }
  }
  return violations;
}

/** The circles of files importing each other (Tarjan's strongly connected components), each sorted. */
function circlesOf(imports: ReadonlyMap<string, readonly string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const circles: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of imports.get(v) ?? []) {
      if (!imports.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || imports.get(v)!.includes(v)) circles.push(component.sort());
    }
  };
  for (const f of imports.keys()) if (!index.has(f)) visit(f);
  return circles;
}

describe('import floors (README Architecture table)', () => {
  it('the table names each folder once, and a row imports only rows above it', () => {
    const seen = new Set<Floor>();
    for (const row of table) {
      assert.ok(!seen.has(row.floor), `${row.floor} is listed once`);
      if (row.imports !== 'above') {
        for (const f of row.imports) assert.ok(seen.has(f), `${row.floor} imports ${f}, which must be a row above it`);
      }
      seen.add(row.floor);
    }
  });

  it('every folder of src/ has a row', () => {
    const floors = new Set(table.map((r) => r.floor));
    for (const f of files) assert.ok(floors.has(floorOf(f)), `${f}: its folder ${floorOf(f)} has a row in the README table`);
  });

  it('every import goes to a folder the importer\'s row names (or to its own folder)', () => {
    assert.deepEqual(floorViolations(graph), []);
  });

  it('the known exceptions still occur (remove an entry once its import is gone)', () => {
    for (const e of KNOWN_EXCEPTIONS) assert.ok(graph.get(e.from)?.includes(e.to), `${e.from} → ${e.to} no longer happens: remove it from KNOWN_EXCEPTIONS`);
  });

  it('no file imports itself round a circle', () => {
    assert.deepEqual(circlesOf(graph), []);
  });

  it('resolves every relative import to a file that exists', () => {
    const missing = [...graph].flatMap(([from, targets]) => targets.filter((t) => !graph.has(t)).map((t) => `${from} → ${t}`));
    assert.deepEqual(missing, []);
  });

  it("the plugin kit's and the shipped plugins' unit tests reach pgward through its public entry points only", () => {
    const tests = ['test/unit/plugin-kit.test.ts', 'test/unit/plugin-deny-statements.test.ts', 'test/unit/plugin-proxy-login.test.ts'];
    for (const test of tests) {
      const inside = importsOf(join(REPO, test)).filter((to) => !(floorOf(to) === 'src/*.ts' || floorOf(to) === 'plugins/'));
      assert.deepEqual(inside, [], `${test} imports only src/*.ts and plugins/`);
    }
  });

  it('can fail: an import up a floor, a plugin reaching inside src/ and a circle are all caught', () => {
    const bad = new Map([
      ['src/protocol/a.ts', ['src/cli/main.ts']],
      ['plugins/x/index.ts', ['src/pipeline/chain.ts', 'src/index.ts']],
      ['src/sql/a.ts', ['src/sql/b.ts']],
      ['src/sql/b.ts', ['src/sql/c.ts']],
      ['src/sql/c.ts', ['src/sql/a.ts']],
    ]);
    assert.deepEqual(floorViolations(bad), [
      'src/protocol/a.ts imports src/cli/main.ts (protocol may import nothing)',
      'plugins/x/index.ts imports src/pipeline/chain.ts (plugins/ may import src/*.ts)',
    ]);
    assert.deepEqual(circlesOf(bad), [['src/sql/a.ts', 'src/sql/b.ts', 'src/sql/c.ts']]);
  });
});
