/**
 * A `.json` file must be JSON: YAML (which reads JSON too) would accept a trailing comma or a
 * comment that every other JSON tool rejects. Returns the problem (with the line and column,
 * never the text, which may hold a password), or undefined when the text is JSON or the file is
 * not named `.json`.
 */
export function jsonSyntaxProblem(path: string, text: string): string | undefined {
  if (!/\.json$/i.test(path)) return undefined;
  try {
    JSON.parse(text);
    return undefined;
  } catch (err) {
    const at = /at position (\d+)/.exec((err as Error).message);
    if (!at) return `${path}: invalid JSON (${/Unexpected end/.test((err as Error).message) ? 'unexpected end of the file' : 'syntax error'})`;
    const before = text.slice(0, Number(at[1]));
    const line = before.split('\n').length;
    const col = before.length - before.lastIndexOf('\n');
    return `${path}: invalid JSON at line ${line}, column ${col}`;
  }
}
