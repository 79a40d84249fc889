/** `host:port` as addresses are written in flags, logs and messages: IPv6 hosts in brackets. */

/** `host:port`, with an IPv6 host in brackets (`[::1]:5432`) so the port stays readable. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Reads `HOST:PORT` or `[IPv6]:PORT`; an empty host means every address (`:5432` → 0.0.0.0). */
export function parseHostPort(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text);
  if (!m) throw new Error(`invalid address "${text}" (use HOST:PORT)`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`invalid port in "${text}"`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}
