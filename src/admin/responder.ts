import { asPgError, be, PgError, SqlState, type BackendMessage, type FieldDescription, type FrontendMessage } from '../protocol/index.js';
import { bindParams, cellText, paramCount, plan, type Column, type ColumnType, type ConsoleHost, type Plan } from './commands.js';

const TYPES: Record<ColumnType, { oid: number; size: number }> = {
  text: { oid: 25, size: -1 },
  int8: { oid: 20, size: 8 },
  timestamptz: { oid: 1184, size: 8 },
  bool: { oid: 16, size: 1 },
};

/** The console's side of the wire once login is done. */
export interface ConsoleIo {
  read(): Promise<FrontendMessage>;
  send(...messages: BackendMessage[]): void;
}

export interface ConsoleOptions {
  host: ConsoleHost;
  /** Called before each command runs (the caller logs it with the admin's subject). */
  onCommand(sql: string): void;
}

function rowDescription(columns: Column[]): BackendMessage {
  const fields: FieldDescription[] = columns.map((c) => ({
    name: c.name,
    tableOid: 0,
    columnAttr: 0,
    typeOid: TYPES[c.type].oid,
    typeSize: TYPES[c.type].size,
    typeModifier: -1,
    format: 0,
  }));
  return be.rowDescription(fields);
}

function describe(columns: Column[]): BackendMessage {
  return columns.length > 0 ? rowDescription(columns) : be.noData();
}

async function execute(p: Plan): Promise<BackendMessage[]> {
  const { rows, tag } = await p.run();
  const out: BackendMessage[] = rows.map((r) => be.dataRow(r.map((v, i) => {
    const t = cellText(v, p.columns[i]!.type);
    return t === null ? null : Buffer.from(t, 'utf8');
  })));
  out.push(be.commandComplete(tag));
  return out;
}

interface Portal {
  plan?: Plan;
  sql: string;
}

const noStatement = (name: string) => new PgError('ERROR', '26000', `prepared statement "${name}" does not exist`);
const noPortal = (name: string) => new PgError('ERROR', '34000', `portal "${name}" does not exist`);
/** Placeholders stand in for parameters when a statement is checked before its values are bound. */
const unbound = (sql: string) => sql.replace(/\$\d+/g, "'0'");

/** One console connection's prepared statements and portals, and how each message is answered. */
class ConsoleConnection {
  private readonly statements = new Map<string, string>();
  private readonly portals = new Map<string, Portal>();

  constructor(
    private readonly io: ConsoleIo,
    private readonly opts: ConsoleOptions,
  ) {}

  private planOf(sql: string): Plan | undefined {
    return sql.trim() === '' ? undefined : plan(sql, this.opts.host);
  }

  async query(sql: string): Promise<void> {
    const p = this.planOf(sql);
    if (!p) this.io.send(be.emptyQueryResponse());
    else {
      this.opts.onCommand(sql);
      this.io.send(...(p.columns.length > 0 ? [rowDescription(p.columns)] : []), ...(await execute(p)));
    }
  }

  parse(name: string, sql: string): void {
    if (sql.trim() !== '') plan(unbound(sql), this.opts.host);
    this.statements.set(name, sql);
    this.io.send(be.parseComplete());
  }

  bind(b: { portal: string; statement: string; paramFormats: number[]; params: (Buffer | null)[]; resultFormats: number[] }): void {
    const sql = this.statements.get(b.statement);
    if (sql === undefined) throw noStatement(b.statement);
    if (b.paramFormats.some((f) => f !== 0) || b.resultFormats.some((f) => f !== 0)) {
      throw new PgError('ERROR', SqlState.FeatureNotSupported, 'the pgward console speaks the text format only');
    }
    const bound = bindParams(sql, b.params.map((p) => (p === null ? null : p.toString('utf8'))));
    this.portals.set(b.portal, { plan: this.planOf(bound), sql: bound });
    this.io.send(be.bindComplete());
  }

  describe(kind: 'S' | 'P', name: string): void {
    if (kind === 'S') {
      const sql = this.statements.get(name);
      if (sql === undefined) throw noStatement(name);
      const p = this.planOf(unbound(sql));
      this.io.send(be.parameterDescription(Array<number>(paramCount(sql)).fill(25)), describe(p?.columns ?? []));
      return;
    }
    const portal = this.portals.get(name);
    if (!portal) throw noPortal(name);
    this.io.send(describe(portal.plan?.columns ?? []));
  }

  async execute(name: string): Promise<void> {
    const portal = this.portals.get(name);
    if (!portal) throw noPortal(name);
    if (!portal.plan) this.io.send(be.emptyQueryResponse());
    else {
      this.opts.onCommand(portal.sql);
      this.io.send(...(await execute(portal.plan)));
    }
  }

  close(kind: 'S' | 'P', name: string): void {
    (kind === 'S' ? this.statements : this.portals).delete(name);
    this.io.send(be.closeComplete());
  }

  async answer(msg: FrontendMessage): Promise<void> {
    switch (msg.type) {
      case 'Query':
        return this.query(msg.body().sql);
      case 'Parse':
        return this.parse(msg.body().name, msg.body().sql);
      case 'Bind':
        return this.bind(msg.body());
      case 'Describe':
        return this.describe(msg.body().kind, msg.body().name);
      case 'Execute':
        return this.execute(msg.body().portal);
      case 'Close':
        return this.close(msg.body().kind, msg.body().name);
      case 'Flush':
        return;
      default:
        throw new PgError('ERROR', SqlState.ProtocolViolation, `unexpected message on the pgward console: ${msg.type}`);
    }
  }
}

/**
 * Answers console commands over the simple and the extended query protocol until the client
 * sends Terminate or goes away. An error in an extended batch skips to the next Sync, as
 * PostgreSQL does. Never throws for anything the client sends.
 */
export async function serveConsole(io: ConsoleIo, opts: ConsoleOptions): Promise<void> {
  const conn = new ConsoleConnection(io, opts);
  let skipping = false;
  for (;;) {
    let msg: FrontendMessage;
    try {
      msg = await io.read();
    } catch {
      return;
    }
    if (msg.type === 'Terminate') return;
    if (msg.type === 'Sync') {
      skipping = false;
      io.send(be.readyForQuery('I'));
      continue;
    }
    if (skipping && msg.type !== 'Query') continue;
    try {
      await conn.answer(msg);
      if (msg.type === 'Query') io.send(be.readyForQuery('I'));
    } catch (err) {
      io.send(be.errorResponse(asPgError(err).toFields()));
      if (msg.type === 'Query') io.send(be.readyForQuery('I'));
      else skipping = true;
    }
  }
}
