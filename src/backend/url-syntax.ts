/**
 * The character-level rules of libpq connection URLs: percent-decoding as libpq does it, IPv6
 * literals, and the redacted rendering every error and log line shows instead of the URL itself.
 */

export class BackendUrlError extends Error {
  readonly code = 'PGWARD_ERR_BACKEND_URL' as const;
  /** The URL with its passwords redacted. */
  readonly url: string;
  /** What is wrong with it, without the URL (for callers that show the URL their own way). */
  readonly detail: string;

  constructor(url: string, detail: string) {
    const shown = renderForError(url);
    super(`invalid backend URL ${shown}: ${detail}`);
    this.name = 'BackendUrlError';
    this.url = shown;
    this.detail = detail;
  }
}

/** Makes the error for one URL from a detail (so parsing steps need not carry the URL). */
export type UrlFailure = (detail: string) => BackendUrlError;

/**
 * The URL with passwords replaced by `***`: the userinfo password and the value of every query key
 * whose name contains "pass" (password, sslpassword, passfile…). Deliberately conservative for
 * malformed input: the userinfo is taken to end at the LAST '@' in the whole string, so a password
 * holding unencoded '/', '?' or '@' is still hidden (at worst more than the password is hidden).
 */
export function redactUrl(url: string): string {
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.exec(url);
  const prefix = scheme ? scheme[0] : '';
  let rest = url.slice(prefix.length);
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    const userinfo = rest.slice(0, at);
    const colon = userinfo.indexOf(':');
    if (colon >= 0) rest = `${userinfo.slice(0, colon)}:***${rest.slice(at)}`;
  }
  // A secret value runs to the next "&name=" (so an unencoded '&' inside it stays hidden) or the end.
  rest = rest.replace(/([?&])([^=&?]*)=(.*?)(?=&[A-Za-z_%][^=&]*=|$)/gs, (all, sep: string, key: string) =>
    /pass/i.test(safeDecode(key)) ? `${sep}${key}=***` : all,
  );
  return prefix + rest;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** libpq-style percent-decoding: '%XX' only, no '+' → space, no NUL, valid UTF-8. */
export function decodeUrlPart(raw: string, fail: UrlFailure, what: string): string {
  if (!raw.includes('%')) return raw;
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; ) {
    if (raw.charCodeAt(i) === 0x25 /* % */) {
      const hex = raw.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) throw fail(`invalid percent-encoding in the ${what}`);
      const byte = parseInt(hex, 16);
      if (byte === 0) throw fail(`forbidden %00 in the ${what}`);
      bytes.push(byte);
      i += 3;
    } else {
      const ch = String.fromCodePoint(raw.codePointAt(i)!);
      bytes.push(...Buffer.from(ch, 'utf8'));
      i += ch.length;
    }
  }
  try {
    return utf8.decode(Uint8Array.from(bytes));
  } catch {
    throw fail(`the ${what} is not valid UTF-8 after percent-decoding`);
  }
}

export function isIPv6Literal(s: string): boolean {
  const [addr, zone, extra] = s.split('%');
  if (extra !== undefined || addr === undefined) return false;
  if (zone !== undefined && !/^[A-Za-z0-9._~-]+$/.test(zone)) return false;
  if (!/^[0-9A-Fa-f:.]+$/.test(addr) || (addr.match(/:/g) ?? []).length < 2) return false;
  const doubles = addr.split('::').length - 1;
  return doubles <= 1 && !/:::/.test(addr);
}

export function firstIndexOfAny(s: string, chars: string): number {
  for (let i = 0; i < s.length; i++) if (chars.includes(s[i]!)) return i;
  return s.length;
}

function safeDecode(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/** The redacted URL for an error message, truncated so a huge input cannot flood logs. */
function renderForError(url: string): string {
  const r = redactUrl(typeof url === 'string' ? url : '');
  return JSON.stringify(r.length > 300 ? `${r.slice(0, 300)}…` : r);
}
