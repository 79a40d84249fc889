/**
 * The demo's embedded database: PGlite (PostgreSQL compiled to WebAssembly) in this process, with
 * a seeded table `demo`, served over PostgreSQL's protocol on a free loopback port.
 */
import type { PGlite } from '@electric-sql/pglite';
import type { PGLiteSocketServer } from '@electric-sql/pglite-socket';

/** The rows seeded into the `demo` table when it is missing. */
const DEMO_ROWS: readonly (readonly [number, string, string])[] = [
  [1, 'alpha', 'the first row'],
  [2, 'bravo', 'reached through pgward'],
  [3, 'charlie', 'authenticated with a JWT'],
  [4, 'delta', 'stored in PGlite'],
  [5, 'echo', 'PostgreSQL in WebAssembly'],
];
/** PGlite itself could not start (a bad or locked --data directory): the user's problem to fix, said plainly. */
export class PgliteStartError extends Error {}

export interface EmbeddedDb {
  url: string;
  describe: string;
  stop(): Promise<void>;
}

/** Starts PGlite (persisted in `dataDir`, else in memory), seeds `demo`, serves it on a loopback port. */
export async function startPglite(dataDir: string | undefined, maxConnections: number): Promise<EmbeddedDb> {
  // Loaded here, not at the top: every other command would otherwise pay for loading PGlite.
  const { PGlite: PGliteClass } = await import('@electric-sql/pglite');
  const { PGLiteSocketServer: SocketServer } = await import('@electric-sql/pglite-socket');
  let db: PGlite;
  try {
    db = dataDir === undefined ? await PGliteClass.create() : await PGliteClass.create({ dataDir });
  } catch (e) {
    throw new PgliteStartError(`cannot start PGlite${dataDir ? ` in ${dataDir}` : ''}: ${(e as Error)?.message ?? String(e)}`);
  }
  let server: PGLiteSocketServer | undefined;
  try {
    const missing = await db.query<{ missing: boolean }>(`select to_regclass('public.demo') is null as missing`);
    if (missing.rows[0]?.missing) {
      await db.transaction(async (tx) => {
        await tx.exec('create table public.demo (id integer primary key, name text not null, note text)');
        for (const [id, name, note] of DEMO_ROWS) {
          await tx.query('insert into public.demo (id, name, note) values ($1, $2, $3)', [id, name, note]);
        }
      });
    }
    const version = (await db.query<{ v: string }>(`select current_setting('server_version') as v`)).rows[0]?.v ?? '?';
    server = new SocketServer({ db, host: '127.0.0.1', port: 0, maxConnections });
    await server.start();
    const conn = server.getServerConn(); // "127.0.0.1:PORT" once listening
    const port = Number(conn.slice(conn.lastIndexOf(':') + 1));
    const s = server;
    return {
      // PGlite has one user and one database and accepts any password; it answers SSLRequest with N.
      // It never answers a StartupMessage asking for protocol 3.2 (no error, no NegotiateProtocolVersion).
      url: `postgres://postgres@127.0.0.1:${port}/postgres?sslmode=disable&max_protocol_version=3.0`,
      describe: `PGlite (PostgreSQL ${version} in WebAssembly, ${dataDir ? `data in ${dataDir}` : 'in memory'}) on 127.0.0.1:${port}`,
      async stop() {
        await s.stop();
        await db.close();
      },
    };
  } catch (e) {
    await server?.stop().catch(() => {});
    await db.close().catch(() => {});
    throw e;
  }
}

