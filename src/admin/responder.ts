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

/**
 * Answers console commands over the simple and the extended query protocol until the client
 * sends Terminate or goes away. An error in an extended batch skips to the next Sync, as
 * PostgreSQL does. Never throws for anything the client sends.
 */
export async function serveConsole(io: ConsoleIo, opts: ConsoleOptions): Promise<void> {
  const statements = new Map<string, string>();
  const portals = new Map<string, Portal>();
  let skipping = false;
  const planOf = (sql: string): Plan | undefined => (sql.trim() === '' ? undefined : plan(sql, opts.host));
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
      switch (msg.type) {
        case 'Query': {
          const sql = msg.body().sql;
          const p = planOf(sql);
          if (!p) io.send(be.emptyQueryResponse());
          else {
            opts.onCommand(sql);
            io.send(...(p.columns.length > 0 ? [rowDescription(p.columns)] : []), ...(await execute(p)));
          }
          io.send(be.readyForQuery('I'));
          break;
        }
        case 'Parse': {
          const { name, sql } = msg.body();
          if (sql.trim() !== '') plan(sql.replace(/\$\d+/g, "'0'"), opts.host);
          statements.set(name, sql);
          io.send(be.parseComplete());
          break;
        }
        case 'Bind': {
          const b = msg.body();
          const sql = statements.get(b.statement);
          if (sql === undefined) throw new PgError('ERROR', '26000', `prepared statement "${b.statement}" does not exist`);
          if (b.paramFormats.some((f) => f !== 0) || b.resultFormats.some((f) => f !== 0)) {
            throw new PgError('ERROR', SqlState.FeatureNotSupported, 'the pgward console speaks the text format only');
          }
          const bound = bindParams(sql, b.params.map((p) => (p === null ? null : p.toString('utf8'))));
          portals.set(b.portal, { plan: planOf(bound), sql: bound });
          io.send(be.bindComplete());
          break;
        }
        case 'Describe': {
          const { kind, name } = msg.body();
          if (kind === 'S') {
            const sql = statements.get(name);
            if (sql === undefined) throw new PgError('ERROR', '26000', `prepared statement "${name}" does not exist`);
            const p = planOf(sql.replace(/\$\d+/g, "'0'"));
            io.send(be.parameterDescription(Array(paramCount(sql)).fill(25)), describe(p?.columns ?? []));
          } else {
            const portal = portals.get(name);
            if (!portal) throw new PgError('ERROR', '34000', `portal "${name}" does not exist`);
            io.send(describe(portal.plan?.columns ?? []));
          }
          break;
        }
        case 'Execute': {
          const portal = portals.get(msg.body().portal);
          if (!portal) throw new PgError('ERROR', '34000', `portal "${msg.body().portal}" does not exist`);
          if (!portal.plan) io.send(be.emptyQueryResponse());
          else {
            opts.onCommand(portal.sql);
            io.send(...(await execute(portal.plan)));
          }
          break;
        }
        case 'Close': {
          const { kind, name } = msg.body();
          (kind === 'S' ? statements : portals).delete(name);
          io.send(be.closeComplete());
          break;
        }
        case 'Flush':
          break;
        default:
          throw new PgError('ERROR', SqlState.ProtocolViolation, `unexpected message on the pgward console: ${msg.type}`);
      }
    } catch (err) {
      const e = asPgError(err);
      io.send(be.errorResponse(e.toFields()));
      if (msg.type === 'Query') io.send(be.readyForQuery('I'));
      else skipping = true;
    }
  }
}
