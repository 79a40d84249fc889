import { Parser, parseDocument, type CST, type YAMLError } from 'yaml';
import { jsonSyntaxProblem, lineColumn } from './json-syntax.js';

const WHAT: Record<string, string> = {
  TAB_AS_INDENT: 'a tab used as indentation; YAML indents with spaces',
  BAD_INDENT: 'bad indentation',
  BLOCK_AS_IMPLICIT_KEY: 'bad indentation',
  MULTILINE_IMPLICIT_KEY: 'a line that is neither "key: value" nor "- item" (a missing ":"?)',
  MULTIPLE_DOCS: 'more than one document (---)',
  BAD_ALIAS: 'an alias (*name) with no anchor',
};

/**
 * Reads a YAML file, or a `.json` file as strict JSON, with duplicate keys refused. Problems give
 * the line and column an editor shows for the mistake, and never the text (it may hold a password).
 */
export function parseYamlOrJson(path: string, text: string): { value?: unknown; problems: string[] } {
  const notJson = jsonSyntaxProblem(path, text);
  if (notJson) return { problems: [notJson] };
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) return { problems: yamlProblems(path, text, doc.errors) };
  try {
    return { value: doc.toJS({ maxAliasCount: 100 }), problems: [] };
  } catch {
    return { problems: [`${path}: the document cannot be read (too many aliases?)`] };
  }
}

/** One line per mistake (errors that follow from one mistake on the same line are left out). */
export function yamlProblems(path: string, text: string, errors: readonly YAMLError[]): string[] {
  const seen = new Set<number>();
  const out: string[] = [];
  // Where each implicit key that runs over several lines ends (yaml reports it from its start).
  const keyEnds = new Map(errors.filter((e) => e.code === 'MULTILINE_IMPLICIT_KEY').map((e) => [e.pos[0], e.pos[1]] as const));
  for (const e of errors) {
    const { offset, what } = mistakeOf(text, e, keyEnds);
    const { line, col } = lineColumn(text, offset);
    if (seen.has(line)) continue;
    seen.add(line);
    const where = `at line ${line}, column ${col}`;
    out.push(e.code === 'DUPLICATE_KEY' ? `${path}: duplicate key ${where}` : `${path}: invalid YAML ${where}: ${what}`);
  }
  return out;
}

/**
 * yaml reports where it noticed a problem. For a quote or a bracket that is never closed that is
 * where the file (or the next key) begins again — often the next line, or the line after the end
 * of the file — so the opening character is taken instead. Other positions are kept, moved past
 * the indentation to the first character of the line (a tab in the indentation stays the mistake).
 */
function mistakeOf(text: string, e: YAMLError, keyEnds: ReadonlyMap<number, number>): { offset: number; what: string } {
  const noticed = e.pos[0];
  const deeper = overIndentedLine(text, e, keyEnds);
  if (deeper !== undefined) return { offset: deeper, what: 'a key indented deeper than the one above it' };
  if (/quote/i.test(e.message)) {
    const open = lastUnclosed(text, noticed, (t) => (t.type === 'double-quoted-scalar' || t.type === 'single-quoted-scalar') && !closedQuote(t.source));
    if (open) return { offset: open.offset, what: 'a quoted string that is never closed' };
  }
  if (/flow (sequence|map|collection)/i.test(e.message)) {
    const open = lastUnclosed(text, noticed, (t) => t.type === 'flow-collection' && !closedFlow(t));
    if (open) return { offset: open.offset, what: `a ${(open as CST.FlowCollection).start.source} that is never closed` };
  }
  let offset = noticed;
  const lineStart = text.lastIndexOf('\n', offset - 1) + 1;
  if (/^ *$/.test(text.slice(lineStart, offset))) while (text[offset] === ' ') offset++;
  return { offset, what: WHAT[e.code] ?? `syntax error ${e.code}` };
}

/**
 * `b: 2` followed by `  c: 3` (indented too far) reads as one value, "2 c", running into a key:
 * yaml reports it on the line of `b`, where the value starts; the line to fix is the deeper one.
 * Returns the first character of that line, or undefined when the error is something else (a key
 * at the start of its line running on is a missing ":" on that first line, reported as it is).
 */
function overIndentedLine(text: string, e: YAMLError, keyEnds: ReadonlyMap<number, number>): number | undefined {
  if (e.code !== 'BLOCK_AS_IMPLICIT_KEY' && e.code !== 'MULTILINE_IMPLICIT_KEY') return undefined;
  const end = keyEnds.get(e.pos[0]);
  if (end === undefined) return undefined;
  const lineStart = text.lastIndexOf('\n', e.pos[0] - 1) + 1;
  if (!/:\s+$/.test(text.slice(lineStart, e.pos[0]))) return undefined;
  let offset = text.lastIndexOf('\n', end - 1) + 1;
  while (text[offset] === ' ') offset++;
  return offset;
}

function closedQuote(source: string): boolean {
  return source.startsWith('"') ? /^"(?:[^"\\]|\\[\s\S])*"$/.test(source) : /^'(?:[^']|'')*'$/.test(source);
}

function closedFlow(t: CST.FlowCollection): boolean {
  const close = t.start.source === '[' ? ']' : '}';
  return t.end.some((x) => x.source === close);
}

/** The last token opened before `offset` that matches (an unclosed quote or bracket). */
function lastUnclosed(text: string, offset: number, unclosed: (t: CST.Token & { source?: string }) => boolean): CST.Token | undefined {
  let found: CST.Token | undefined;
  for (const top of new Parser().parse(text)) {
    for (const t of walk(top)) if (t.offset < offset && unclosed(t as CST.Token & { source?: string })) found = t;
  }
  return found;
}

/** Every token in a CST subtree, in document order. */
function* walk(t: CST.Token | undefined): Generator<CST.Token> {
  if (!t) return;
  yield t;
  if ('value' in t && t.value && typeof t.value === 'object') yield* walk(t.value as CST.Token);
  if ('items' in t) {
    for (const item of t.items as CST.CollectionItem[]) {
      yield* walk(item.key as CST.Token | undefined);
      yield* walk(item.value);
    }
  }
}
