import type net from 'node:net';

/**
 * HAProxy PROXY protocol, versions 1 (text) and 2 (binary), as sent by HAProxy, AWS NLB, GCP,
 * Kubernetes ingress controllers… in front of a TCP service. Spec:
 * https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt
 */

export interface ProxyEndpoint {
  address: string;
  port: number;
}

/**
 * What a header says. `LOCAL` (a health check from the proxy itself) and `UNKNOWN` (v1
 * `UNKNOWN`, v2 `AF_UNSPEC`) mean: use the real connection's addresses.
 */
export type ProxyHeader =
  | { command: 'LOCAL' }
  | { command: 'PROXY'; family: 'IPv4' | 'IPv6'; source: ProxyEndpoint; destination: ProxyEndpoint }
  | { command: 'UNKNOWN' };

export type ProxyParseResult = { header: ProxyHeader; consumed: number } | { incomplete: true } | { error: string };

/** The v2 signature: `\r\n\r\n\0\r\nQUIT\n`. */
export const PROXY_V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** v1 lines are at most 107 bytes, CRLF included. */
export const PROXY_V1_MAX_LENGTH = 107;
/** Largest v2 address-and-TLV block accepted (addresses need at most 216 bytes; TLVs share the rest). */
export const PROXY_V2_MAX_PAYLOAD = 4096;

const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V2_HEADER = 16;
const AF_UNSPEC = 0;
const AF_INET = 1;
const AF_INET6 = 2;
const AF_UNIX = 3;

/**
 * Parses a PROXY protocol v1 or v2 header at the start of `buf`. Pure and incremental: while
 * it answers `incomplete`, call it again with the same bytes plus what arrived since. Never
 * looks past the header (`consumed` bytes); what follows belongs to the proxied protocol.
 */
export function parseProxyHeader(buf: Buffer): ProxyParseResult {
  if (buf.length === 0) return { incomplete: true };
  if (buf[0] === PROXY_V2_SIGNATURE[0]) return parseV2(buf);
  if (buf[0] === V1_PREFIX[0]) return parseV1(buf);
  return { error: 'missing PROXY protocol header' };
}

function matchesPrefix(buf: Buffer, signature: Buffer): boolean {
  const n = Math.min(buf.length, signature.length);
  return buf.subarray(0, n).equals(signature.subarray(0, n));
}

function parseV1(buf: Buffer): ProxyParseResult {
  if (!matchesPrefix(buf, V1_PREFIX)) return { error: 'bad PROXY protocol v1 signature' };
  const window = buf.subarray(0, PROXY_V1_MAX_LENGTH);
  const lf = window.indexOf(0x0a);
  if (lf < 0) {
    return buf.length >= PROXY_V1_MAX_LENGTH
      ? { error: `PROXY protocol v1 header longer than ${PROXY_V1_MAX_LENGTH} bytes` }
      : { incomplete: true };
  }
  if (buf[lf - 1] !== 0x0d) return { error: 'PROXY protocol v1 header does not end with CRLF' };
  const line = buf.toString('latin1', 0, lf - 1);
  if (!/^[\x20-\x7e]*$/.test(line)) return { error: 'PROXY protocol v1 header has non-printable characters' };
  const consumed = lf + 1;
  const parts = line.split(' ');
  const transport = parts[1];
  if (transport === 'UNKNOWN') return { header: { command: 'UNKNOWN' }, consumed };
  if (transport !== 'TCP4' && transport !== 'TCP6') {
    return { error: `unsupported PROXY protocol v1 protocol "${transport ?? ''}"` };
  }
  if (parts.length !== 6) return { error: 'malformed PROXY protocol v1 header' };
  const [, , src, dst, sport, dport] = parts as [string, string, string, string, string, string];
  const family = transport === 'TCP4' ? 'IPv4' : 'IPv6';
  const source = family === 'IPv4' ? (isIPv4(src) ? src : undefined) : canonicalIPv6(src);
  const destination = family === 'IPv4' ? (isIPv4(dst) ? dst : undefined) : canonicalIPv6(dst);
  if (source === undefined) return { error: `bad ${family} source address in PROXY protocol header` };
  if (destination === undefined) return { error: `bad ${family} destination address in PROXY protocol header` };
  const sourcePort = parsePort(sport);
  const destinationPort = parsePort(dport);
  if (sourcePort === undefined || destinationPort === undefined) return { error: 'bad port in PROXY protocol header' };
  return {
    header: {
      command: 'PROXY',
      family,
      source: { address: source, port: sourcePort },
      destination: { address: destination, port: destinationPort },
    },
    consumed,
  };
}

function parseV2(buf: Buffer): ProxyParseResult {
  if (!matchesPrefix(buf, PROXY_V2_SIGNATURE)) return { error: 'bad PROXY protocol v2 signature' };
  if (buf.length > 12) {
    const version = buf[12]! >> 4;
    if (version !== 2) return { error: `unsupported PROXY protocol version ${version}` };
    if ((buf[12]! & 0x0f) > 1) return { error: `unknown PROXY protocol v2 command ${buf[12]! & 0x0f}` };
  }
  // LOCAL (a health check): "the family … is ignored".
  if (buf.length > 13 && (buf[12]! & 0x0f) === 1) {
    const family = buf[13]! >> 4;
    const transport = buf[13]! & 0x0f;
    if (family > AF_UNIX || transport > 2) {
      return { error: `unknown PROXY protocol v2 address family/protocol 0x${buf[13]!.toString(16).padStart(2, '0')}` };
    }
  }
  if (buf.length < V2_HEADER) return { incomplete: true };
  const length = buf.readUInt16BE(14);
  if (length > PROXY_V2_MAX_PAYLOAD) return { error: `PROXY protocol v2 header too long (${length} bytes)` };
  if (buf.length < V2_HEADER + length) return { incomplete: true };
  const consumed = V2_HEADER + length;
  const command = buf[12]! & 0x0f;
  const family = buf[13]! >> 4;
  const transport = buf[13]! & 0x0f;
  if (command === 0) return { header: { command: 'LOCAL' }, consumed };
  if (family === AF_UNSPEC || transport === 0) return { header: { command: 'UNKNOWN' }, consumed };
  if (family === AF_UNIX) return { error: 'PROXY protocol v2 AF_UNIX addresses are not supported' };
  const block = buf.subarray(V2_HEADER, consumed);
  const ipLength = family === AF_INET ? 4 : 16;
  if (block.length < 2 * ipLength + 4) return { error: 'PROXY protocol v2 address block too short' };
  const format = family === AF_INET ? formatIPv4 : formatIPv6;
  return {
    header: {
      command: 'PROXY',
      family: family === AF_INET ? 'IPv4' : 'IPv6',
      source: { address: format(block.subarray(0, ipLength)), port: block.readUInt16BE(2 * ipLength) },
      destination: { address: format(block.subarray(ipLength, 2 * ipLength)), port: block.readUInt16BE(2 * ipLength + 2) },
    },
    consumed,
  };
}

function parsePort(s: string): number | undefined {
  if (!/^\d{1,5}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= 65535 ? n : undefined;
}

const IPV4 = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** Dotted-quad IPv4 in its standard form (no leading zeros). */
export function isIPv4(s: string): boolean {
  return IPV4.test(s);
}

function canonicalIPv6(s: string): string | undefined {
  const bytes = parseIPv6(s);
  return bytes ? formatIPv6(bytes) : undefined;
}

/** The 16 bytes of a textual IPv6 address (with `::` and an embedded IPv4 tail), or null. No zone ids. */
export function parseIPv6(s: string): Buffer | null {
  if (s.length < 2 || s.length > 45) return null;
  let text = s;
  const lastColon = s.lastIndexOf(':');
  if (lastColon < 0) return null;
  if (s.includes('.', lastColon)) {
    const v4 = s.slice(lastColon + 1);
    if (!isIPv4(v4)) return null;
    const [a, b, c, d] = v4.split('.').map(Number) as [number, number, number, number];
    text = s.slice(0, lastColon + 1) + ((a << 8) | b).toString(16) + ':' + ((c << 8) | d).toString(16);
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const groups = (h: string): number[] =>
    h === '' ? [] : h.split(':').map((g) => (/^[0-9a-fA-F]{1,4}$/.test(g) ? parseInt(g, 16) : NaN));
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if ([...head, ...tail].some(Number.isNaN)) return null;
  if (halves.length === 1 ? head.length !== 8 : head.length + tail.length > 7) return null;
  const all = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(g, 2 * i));
  return out;
}

function formatIPv4(b: Buffer): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

/** RFC 5952 text of 16 address bytes: lower case, longest zero run as `::`, IPv4-mapped as `::ffff:a.b.c.d`. */
export function formatIPv6(b: Buffer): string {
  if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) {
    return `::ffff:${formatIPv4(b.subarray(12))}`;
  }
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

/* ---------------------------------------------------------------------------------------------- */

export class ProxyProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProxyProtocolError';
  }
}

/**
 * Reads a PROXY protocol header from a fresh connection. Resolves with the header and the bytes
 * that arrived after it (the start of the client's PostgreSQL traffic, often empty); rejects on a
 * malformed header, on EOF or a socket error before a whole header, or after `timeoutMs`.
 *
 * Nothing is unshifted: the socket is left paused, and the caller hands `rest` to the next stage
 * (or `socket.unshift(rest)` and resumes the socket).
 */
export function readProxyHeader(socket: net.Socket, timeoutMs: number): Promise<{ header: ProxyHeader; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    if (socket.destroyed || socket.readableEnded) {
      reject(new ProxyProtocolError('connection closed before the PROXY protocol header'));
      return;
    }
    let buf: Buffer = Buffer.alloc(0);
    let settled = false;
    const finish = (err: Error | null, value?: { header: ProxyHeader; rest: Buffer }) => {
      if (settled) return;
      settled = true;
      socket.pause();
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onError);
      if (err) reject(err);
      else resolve(value!);
    };
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const r = parseProxyHeader(buf);
      if ('incomplete' in r) return;
      if ('error' in r) finish(new ProxyProtocolError(r.error));
      else finish(null, { header: r.header, rest: buf.subarray(r.consumed) });
    };
    const onEnd = () => finish(new ProxyProtocolError('connection closed before the PROXY protocol header'));
    const onError = (err: Error) => finish(err);
    const timer = setTimeout(
      () => finish(new ProxyProtocolError(`no PROXY protocol header within ${timeoutMs} ms`)),
      timeoutMs,
    );
    timer.unref?.();
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.once('error', onError);
    socket.resume();
  });
}

/* ---------------------------------------------------------------------------------------------- */

/** The v1 text line for a header (`LOCAL` has no v1 form). */
export function encodeProxyHeaderV1(header: ProxyHeader): Buffer {
  if (header.command === 'LOCAL') throw new Error('PROXY protocol v1 has no LOCAL command');
  if (header.command === 'UNKNOWN') return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  const proto = header.family === 'IPv4' ? 'TCP4' : 'TCP6';
  const text = (a: string) => {
    const t = header.family === 'IPv4' ? (isIPv4(a) ? a : undefined) : canonicalIPv6(a);
    if (t === undefined) throw new Error(`not an ${header.family} address: ${a}`);
    return t;
  };
  const { source: s, destination: d } = header;
  return Buffer.from(`PROXY ${proto} ${text(s.address)} ${text(d.address)} ${s.port} ${d.port}\r\n`, 'latin1');
}

export interface ProxyV2EncodeOptions {
  /** Transport in the family byte (default STREAM, i.e. TCP). */
  transport?: 'STREAM' | 'DGRAM';
  /** TLVs appended after the addresses. */
  tlvs?: { type: number; value: Buffer }[];
}

/** The v2 binary header for a header; `UNKNOWN` is sent as PROXY with AF_UNSPEC. */
export function encodeProxyHeaderV2(header: ProxyHeader, opts: ProxyV2EncodeOptions = {}): Buffer {
  const transport = opts.transport === 'DGRAM' ? 2 : 1;
  let command = 1;
  let famByte = 0;
  let addresses = Buffer.alloc(0);
  if (header.command === 'LOCAL') command = 0;
  else if (header.command === 'PROXY') {
    const ip = (a: string) => {
      const bytes = header.family === 'IPv4' ? (isIPv4(a) ? Buffer.from(a.split('.').map(Number)) : null) : parseIPv6(a);
      if (!bytes) throw new Error(`not an ${header.family} address: ${a}`);
      return bytes;
    };
    const ports = Buffer.alloc(4);
    ports.writeUInt16BE(header.source.port, 0);
    ports.writeUInt16BE(header.destination.port, 2);
    addresses = Buffer.concat([ip(header.source.address), ip(header.destination.address), ports]);
    famByte = ((header.family === 'IPv4' ? AF_INET : AF_INET6) << 4) | transport;
  }
  const tlvs = (opts.tlvs ?? []).map(({ type, value }) => {
    const h = Buffer.alloc(3);
    h.writeUInt8(type, 0);
    h.writeUInt16BE(value.length, 1);
    return Buffer.concat([h, value]);
  });
  const payload = Buffer.concat([addresses, ...tlvs]);
  const fixed = Buffer.alloc(4);
  fixed.writeUInt8(0x20 | command, 0);
  fixed.writeUInt8(famByte, 1);
  fixed.writeUInt16BE(payload.length, 2);
  return Buffer.concat([PROXY_V2_SIGNATURE, fixed, payload]);
}
