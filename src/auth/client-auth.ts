// Client authentication rules (`clientAuth:` in the config file), read like pg_hba.conf: an
// ordered list whose first rule with every condition matching the connection decides the method.
import net from 'node:net';
import { PgError, SqlState } from '../protocol/index.js';

export type ClientAuthMethod = 'password' | 'oauth' | 'reject';

/** A name, a `/regex/flags` or a list of them; absent matches everything. */
export interface NameMatcher {
  readonly source: string;
  test(name: string): boolean;
}

export interface ClientAuthRule {
  /** 1-based position in the list, for logs and `pgward check`. */
  readonly index: number;
  readonly database?: NameMatcher;
  readonly user?: NameMatcher;
  /** CIDR blocks the client address must fall in. */
  readonly address?: { readonly source: string; readonly list: net.BlockList };
  readonly tls: 'required' | 'any';
  readonly method: ClientAuthMethod;
}

/** What a rule is matched against: the connection as the proxy sees it before any password. */
export interface ClientAuthConnection {
  database: string;
  user: string;
  /** The client's address (the PROXY-protocol source when that is on). */
  address: string;
  tls: boolean;
}

const RULE_KEYS = new Set(['database', 'user', 'address', 'tls', 'method']);
const METHODS: readonly ClientAuthMethod[] = ['password', 'oauth', 'reject'];

/** Parses `clientAuth:`; every problem is pushed, prefixed with where it is. */
export function parseClientAuth(value: unknown, problems: string[]): ClientAuthRule[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.length === 0) {
    problems.push('clientAuth: expected a non-empty list of rules ({ database?, user?, address?, tls?, method })');
    return undefined;
  }
  const rules: ClientAuthRule[] = [];
  value.forEach((raw: unknown, i) => {
    const where = `clientAuth[${i}]`;
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      problems.push(`${where}: expected a mapping such as { database: app, method: oauth }`);
      return;
    }
    const r = raw as Record<string, unknown>;
    for (const k of Object.keys(r)) if (!RULE_KEYS.has(k)) problems.push(`${where}.${k}: unknown key (known: ${[...RULE_KEYS].join(', ')})`);
    const method = r.method;
    if (typeof method !== 'string' || !METHODS.includes(method as ClientAuthMethod)) {
      problems.push(`${where}.method: expected one of ${METHODS.join(', ')}`);
      return;
    }
    const tls = r.tls ?? 'any';
    if (tls !== 'required' && tls !== 'any') problems.push(`${where}.tls: expected required or any`);
    rules.push({
      index: i + 1,
      database: names(r.database, `${where}.database`, problems),
      user: names(r.user, `${where}.user`, problems),
      address: addresses(r.address, `${where}.address`, problems),
      tls: tls === 'required' ? 'required' : 'any',
      method: method as ClientAuthMethod,
    });
  });
  return rules;
}

function names(value: unknown, where: string, problems: string[]): NameMatcher | undefined {
  if (value === undefined) return undefined;
  const items = Array.isArray(value) ? value : [value];
  if (items.length === 0 || !items.every((x) => typeof x === 'string' && x !== '')) {
    problems.push(`${where}: expected a name, a /regex/ or a list of them`);
    return undefined;
  }
  const tests: ((name: string) => boolean)[] = [];
  for (const item of items as string[]) {
    const re = /^\/(.*)\/([a-z]*)$/s.exec(item);
    if (!re) {
      tests.push((name) => name === item);
      continue;
    }
    try {
      // Anchored like the backends file's keys: a rule names whole user or database names.
      const regex = new RegExp(`^(?:${re[1]})$`, re[2]);
      tests.push((name) => regex.test(name));
    } catch (err) {
      problems.push(`${where}: invalid regular expression ${item}: ${(err as Error).message}`);
    }
  }
  return { source: items.join(', '), test: (name) => tests.some((t) => t(name)) };
}

function addresses(value: unknown, where: string, problems: string[]): ClientAuthRule['address'] {
  if (value === undefined) return undefined;
  const items = Array.isArray(value) ? value : [value];
  const list = new net.BlockList();
  for (const item of items) {
    const cidr = typeof item === 'string' ? /^([^/]+)(?:\/(\d{1,3}))?$/.exec(item.trim()) : null;
    const family = cidr ? net.isIP(cidr[1]!) : 0;
    const prefix = cidr?.[2] === undefined ? (family === 6 ? 128 : 32) : Number(cidr[2]);
    if (!cidr || family === 0 || prefix > (family === 6 ? 128 : 32)) {
      problems.push(`${where}: "${String(item)}" is not an IPv4 or IPv6 address or CIDR block (e.g. 10.0.0.0/8, ::1/128)`);
      continue;
    }
    list.addSubnet(cidr[1]!, prefix, family === 6 ? 'ipv6' : 'ipv4');
  }
  return { source: items.map(String).join(', '), list };
}

/** An IPv4 client seen through an IPv6 socket (`::ffff:10.1.2.3`) matches IPv4 blocks. */
function inBlocks(list: net.BlockList, address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return list.check(mapped[1]!, 'ipv4') || list.check(address, 'ipv6');
  const family = net.isIP(address);
  return family !== 0 && list.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

/** The first rule whose conditions all hold, or undefined. */
export function matchClientAuth(rules: readonly ClientAuthRule[], c: ClientAuthConnection): ClientAuthRule | undefined {
  return rules.find(
    (r) =>
      (r.database === undefined || r.database.test(c.database)) &&
      (r.user === undefined || r.user.test(c.user)) &&
      (r.address === undefined || inBlocks(r.address.list, c.address)) &&
      (r.tls === 'any' || c.tls),
  );
}

/** How the connection is named in refusals, in PostgreSQL's words. */
function connectionWords(c: ClientAuthConnection): string {
  return `host "${c.address}", user "${c.user}", database "${c.database}", ${c.tls ? 'SSL encryption' : 'no encryption'}`;
}

/** FATAL 28000 when no rule matches, as PostgreSQL's "no pg_hba.conf entry". */
export function noRuleError(c: ClientAuthConnection): PgError {
  return new PgError('FATAL', SqlState.InvalidAuthorizationSpecification, `no pgward clientAuth rule for ${connectionWords(c)}`);
}

/** FATAL 28000 for a `reject` rule, as PostgreSQL's "pg_hba.conf rejects connection". */
export function rejectedError(c: ClientAuthConnection): PgError {
  return new PgError('FATAL', SqlState.InvalidAuthorizationSpecification, `pgward clientAuth rejects connection for ${connectionWords(c)}`);
}

/** One line per rule, in order, for `pgward check` and the startup banner. */
export function describeClientAuth(rules: readonly ClientAuthRule[]): string[] {
  return rules.map((r) => {
    const conditions = [
      r.database && `database ${r.database.source}`,
      r.user && `user ${r.user.source}`,
      r.address && `address ${r.address.source}`,
      r.tls === 'required' && 'TLS required',
    ].filter(Boolean);
    return `clientAuth ${r.index}: ${conditions.length ? conditions.join('; ') : 'any connection'} → ${r.method}`;
  });
}
