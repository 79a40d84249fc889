import { PgError } from '../protocol/index.js';
import { parseUntil, type Revocation, type RevocationStore } from './revocations.js';

export type ColumnType = 'text' | 'int8' | 'timestamptz' | 'bool';
export interface Column {
  name: string;
  type: ColumnType;
}
export type Cell = string | number | boolean | Date | null | undefined;

/** What the console shows of a live session: nothing secret (no token, password or credential). */
export interface SessionView {
  id: string;
  subject?: string;
  user: string;
  database: string;
  clientAddr: string;
  backend?: string;
  state: string;
  tls: boolean;
  relay?: string;
  started?: Date;
  tokenExpires?: Date;
  bytesIn?: number;
  bytesOut?: number;
  statements?: number;
}

/** What the console acts on; given by the proxy that runs it. */
export interface ConsoleHost {
  version: string;
  sessions(): SessionView[];
  /** The backend pool's targets (`user@host:port/database`, never a password) and their connections. */
  pools?(): { target: string; active: number; idle: number; waiting: number; maxSize: number }[];
  stats(): Promise<[string, number][]>;
  revocations: RevocationStore;
  /** Closes sessions matching `which` with FATAL 57P01; returns how many. */
  kill(which: { session?: string; subject?: string }): number;
  /** Closes live sessions the store now revokes; returns how many. */
  enforceRevocations(): number;
  reload(): Promise<void>;
}

/** A planned command: its columns are known before it runs (Describe needs them). */
export interface Plan {
  columns: Column[];
  run(): Promise<{ rows: Cell[][]; tag: string }>;
}

export const COMMANDS = [
  'SHOW SESSIONS',
  'SHOW POOLS',
  'SHOW STATS',
  'SHOW REVOCATIONS',
  'SHOW VERSION',
  'SHOW HELP',
  "KILL SESSION '<id>'",
  "KILL SUBJECT '<sub>'",
  "REVOKE SUBJECT '<sub>' [UNTIL '<timestamp>'] [REASON '<text>']",
  "REVOKE TOKEN '<jti>' [UNTIL '<timestamp>'] [REASON '<text>']",
  "UNREVOKE SUBJECT '<sub>'",
  "UNREVOKE TOKEN '<jti>'",
  'RELOAD',
];

const SESSION_COLUMNS: Column[] = [
  ...['id', 'subject', 'user', 'database', 'client_addr', 'backend', 'state'].map((name) => ({ name, type: 'text' as const })),
  { name: 'tls', type: 'bool' },
  { name: 'relay', type: 'text' },
  { name: 'started', type: 'timestamptz' },
  { name: 'token_expires', type: 'timestamptz' },
  { name: 'bytes_in', type: 'int8' },
  { name: 'bytes_out', type: 'int8' },
  { name: 'statements', type: 'int8' },
];
const text = (...names: string[]): Column[] => names.map((name) => ({ name, type: 'text' }));
const LIT = String.raw`'((?:[^']|'')*)'`;
const unquote = (s: string) => s.replace(/''/g, "'");

function rowsOf(rows: Cell[][], verb = 'SELECT') {
  return { rows, tag: verb === 'SHOW' ? 'SHOW' : `${verb} ${rows.length}` };
}

/** Replaces `$1`… with the bound values as quoted literals (extended protocol). */
export function bindParams(sql: string, params: readonly (string | null)[]): string {
  return sql.replace(/\$(\d+)/g, (m, n: string) => {
    const v = params[Number(n) - 1];
    if (v === undefined) throw new PgError('ERROR', '08P01', `there is no parameter ${m}`);
    if (v === null) throw new PgError('ERROR', '22023', `parameter ${m} is null`);
    return `'${v.replace(/'/g, "''")}'`;
  });
}

/** Highest `$n` in the text (the parameter count Describe reports). */
export function paramCount(sql: string): number {
  return Math.max(0, ...[...sql.matchAll(/\$(\d+)/g)].map((m) => Number(m[1])));
}

function syntaxError(sql: string): PgError {
  return new PgError('ERROR', '42601', `unknown pgward console command: ${sql.slice(0, 80)}`, {
    hint: `Commands: ${COMMANDS.join('; ')}.`,
  });
}

/** Parses one console command; throws ERROR 42601 (with the command list) for anything else. */
export function plan(input: string, host: ConsoleHost): Plan {
  const sql = input.trim().replace(/;\s*$/, '').trim();
  let m: RegExpMatchArray | null;
  if ((m = /^show\s+(\w+)$/i.exec(sql))) {
    const what = m[1]!.toLowerCase();
    const show = SHOW[what];
    if (show) return show(host);
  }
  if ((m = new RegExp(`^kill\\s+(session|subject)\\s+${LIT}$`, 'i').exec(sql))) {
    const which = m[1]!.toLowerCase() === 'session' ? { session: unquote(m[2]!) } : { subject: unquote(m[2]!) };
    return { columns: [], run: async () => ({ rows: [], tag: `KILL ${host.kill(which)}` }) };
  }
  if ((m = new RegExp(`^revoke\\s+(subject|token)\\s+${LIT}(?:\\s+until\\s+${LIT})?(?:\\s+reason\\s+${LIT})?$`, 'i').exec(sql))) {
    const r: Revocation = { kind: m[1]!.toLowerCase() === 'subject' ? 'sub' : 'jti', value: unquote(m[2]!) };
    if (r.value === '') throw new PgError('ERROR', '22023', 'the subject or token id must not be empty');
    if (m[3] !== undefined) {
      r.until = parseUntil(unquote(m[3]));
      if (r.until === undefined) throw new PgError('ERROR', '22007', `invalid timestamp: "${unquote(m[3])}"`);
    }
    if (m[4] !== undefined) r.reason = unquote(m[4]);
    return {
      columns: [],
      run: async () => {
        host.revocations.add(r);
        return { rows: [], tag: `REVOKE ${host.enforceRevocations()}` };
      },
    };
  }
  if ((m = new RegExp(`^unrevoke\\s+(subject|token)\\s+${LIT}$`, 'i').exec(sql))) {
    const kind = m[1]!.toLowerCase() === 'subject' ? 'sub' : 'jti';
    const value = unquote(m[2]!);
    return {
      columns: [],
      run: async () => {
        const removed = host.revocations.remove(kind, value);
        host.enforceRevocations();
        return { rows: [], tag: `UNREVOKE ${removed ? 1 : 0}` };
      },
    };
  }
  if (/^reload$/i.test(sql)) {
    return { columns: [], run: async () => (await host.reload(), { rows: [], tag: 'RELOAD' }) };
  }
  throw syntaxError(sql);
}

const SHOW: Record<string, (host: ConsoleHost) => Plan> = {
  sessions: (host) => ({
    columns: SESSION_COLUMNS,
    run: async () =>
      rowsOf(
        host.sessions().map((s) => [
          s.id, s.subject, s.user, s.database, s.clientAddr, s.backend, s.state, s.tls, s.relay,
          s.started, s.tokenExpires, s.bytesIn, s.bytesOut, s.statements,
        ]),
      ),
  }),
  pools: (host) => ({
    columns: [...text('target'), ...['active', 'idle', 'waiting', 'max_size'].map((name) => ({ name, type: 'int8' as const }))],
    run: async () => rowsOf((host.pools?.() ?? []).map((p) => [p.target, p.active, p.idle, p.waiting, p.maxSize])),
  }),
  stats: (host) => ({
    columns: [...text('name'), { name: 'value', type: 'int8' }],
    run: async () => rowsOf(await host.stats()),
  }),
  revocations: (host) => ({
    columns: [...text('kind', 'value'), { name: 'until', type: 'timestamptz' }, ...text('reason')],
    run: async () =>
      rowsOf(host.revocations.list().map((r) => [r.kind, r.value, r.until !== undefined ? new Date(r.until) : null, r.reason])),
  }),
  version: (host) => ({ columns: text('version'), run: async () => rowsOf([[`pgward ${host.version}`]]) }),
  help: () => ({ columns: text('command'), run: async () => rowsOf(COMMANDS.map((c) => [c])) }),
};

/** A cell in PostgreSQL's text format. */
export function cellText(v: Cell, type: ColumnType): string | null {
  if (v === null || v === undefined) return null;
  if (type === 'bool') return v ? 't' : 'f';
  if (v instanceof Date) return v.toISOString().replace('T', ' ').replace('Z', '+00');
  if (type === 'timestamptz' && typeof v === 'number') return new Date(v).toISOString().replace('T', ' ').replace('Z', '+00');
  return String(v);
}
