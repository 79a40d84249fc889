/** Recognises the login statement in the forms clients send it. */

const LITERAL = /^\s*select\s+proxy_login\s*\(\s*'((?:[^']|'')*)'\s*(?:::\s*text\s*)?\)\s*(?:as\s+"?proxy_login"?\s*)?;?\s*$/is;
const PARAM = /^\s*select\s+proxy_login\s*\(\s*\$(\d+)\s*(?:::\s*text\s*)?\)\s*(?:as\s+"?proxy_login"?\s*)?;?\s*$/is;

export type LoginStatement = { kind: 'literal'; token: string } | { kind: 'param'; index: number };

export function parseLoginStatement(sql: string): LoginStatement | undefined {
  const lit = LITERAL.exec(sql);
  if (lit) return { kind: 'literal', token: lit[1]!.replace(/''/g, "'") };
  const param = PARAM.exec(sql);
  if (param) return { kind: 'param', index: Number(param[1]) - 1 };
  return undefined;
}

export function isEmptyQuery(sql: string): boolean {
  return /^[\s;]*$/.test(sql);
}
