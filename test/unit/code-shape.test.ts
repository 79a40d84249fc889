/**
 * The shape the README promises for the code: no file over 400 lines, and no function over about
 * 80 lines unless it says why (the list below). Measured on the sources, not on dist/.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import ts from 'typescript';

// dist/test/unit/ → the repository root
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const FOLDERS = ['src', 'plugins', 'bench', 'test', 'native'];
const SOURCE = /\.(ts|mts|mjs|c|h)$/;
const MAX_FILE_LINES = 400;
/** "About 80": a function a few lines over is not the problem this guards against. */
const MAX_FUNCTION_LINES = 90;

/** Functions allowed to be longer, each with its reason (`file:name`). */
const LONG_FUNCTIONS: Record<string, string> = {
  'src/telemetry/metrics.ts:createMetrics': 'declares every metric in one list (names, help, labels, buckets), not logic',
  'plugins/deny-statements/index.ts:denySession':
    "the example plugin keeps one session's state in one closure, as plugins/README.md teaches plugin authors to",
};

function sourceFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' || e.name === 'build' ? [] : sourceFiles(path);
    return SOURCE.test(e.name) && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

function lineCount(text: string): number {
  return text.endsWith('\n') ? text.split('\n').length - 1 : text.split('\n').length;
}

/** Every function-like node with a body: its name (or `<anonymous>`) and its length in lines. */
function functionLengths(path: string, text: string): { name: string; lines: number; line: number }[] {
  const file = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true);
  const found: { name: string; lines: number; line: number }[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body) {
      const start = file.getLineAndCharacterOfPosition(node.getStart()).line;
      const end = file.getLineAndCharacterOfPosition(node.end).line;
      const named = (node as ts.FunctionLikeDeclaration).name;
      found.push({ name: named ? named.getText(file) : '<anonymous>', lines: end - start + 1, line: start + 1 });
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return found;
}

describe('code shape', () => {
  const files = FOLDERS.flatMap(sourceFiles);

  it('finds the sources it measures', () => {
    assert.ok(files.some((f) => f === join('src', 'index.ts')), `src/index.ts among ${files.length} files`);
    assert.ok(files.some((f) => f.startsWith('native') && f.endsWith('.c')), 'the native addon among them');
  });

  it(`no source file is over ${MAX_FILE_LINES} lines`, () => {
    const long = files
      .map((f) => ({ f, lines: lineCount(readFileSync(join(ROOT, f), 'utf8')) }))
      .filter(({ lines }) => lines > MAX_FILE_LINES)
      .map(({ f, lines }) => `${f}: ${lines} lines`);
    assert.deepEqual(long, []);
  });

  it(`no function in src/ or plugins/ is over ${MAX_FUNCTION_LINES} lines without a stated reason`, () => {
    const long: string[] = [];
    const seen = new Set<string>();
    for (const f of files.filter((p) => /^(src|plugins)\//.test(p) && p.endsWith('.ts'))) {
      for (const fn of functionLengths(f, readFileSync(join(ROOT, f), 'utf8'))) {
        if (fn.lines <= MAX_FUNCTION_LINES) continue;
        const key = `${relative('.', f)}:${fn.name}`;
        seen.add(key);
        if (!Object.hasOwn(LONG_FUNCTIONS, key)) long.push(`${f}:${fn.line} ${fn.name}: ${fn.lines} lines`);
      }
    }
    assert.deepEqual(long, []);
    // A reason for a function that is no longer long (or no longer there) is stale: drop it.
    assert.deepEqual(Object.keys(LONG_FUNCTIONS).filter((k) => !seen.has(k)), []);
  });
});
