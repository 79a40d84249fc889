import { execFile, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { appendFile, chmod, chown, copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { type PgVersion } from './pg-versions.js';
import { clusterBinDir, exists, serverOsUser, type OsUser } from './pg-install.js';
import { freePort } from './ports.js';
import { forgetAtExit, stopAtExit } from './stop-at-exit.js';
import { until } from './wait.js';

export { pgBinDir, serverOsUser, whichExecutable, type OsUser } from './pg-install.js';

const execFileAsync = promisify(execFile);

export interface ClusterUser {
  name: string;
  /** Stored hashed per `passwordEncryption`; omitted means the role has no password. */
  password?: string;
  superuser?: boolean;
}

/** Paths of PEM files; the cluster copies them into its data directory with the owner and mode PostgreSQL demands. */
export interface ClusterSsl {
  cert: string;
  key: string;
  /** CA bundle for client certificates (`ssl_ca_file`), needed for `hostssl … cert` / `clientcert=`. */
  ca?: string;
}

export interface PgClusterOptions {
  /** pg_hba.conf lines (default `DEFAULT_HBA`); `local all postgres trust` is always put first. */
  hba?: string[];
  /** Default 100. */
  maxConnections?: number;
  /** Turns `ssl = on` with these files. */
  ssl?: ClusterSsl;
  /** Default 'scram-sha-256'. */
  passwordEncryption?: 'scram-sha-256' | 'md5';
  /** Roles created right after start. */
  users?: ClusterUser[];
  /** Extra postgresql.conf settings, applied last. */
  settings?: Record<string, string | number | boolean>;
  /** Bound on the server start (default 30 s). */
  startTimeoutMs?: number;
  /** PostgreSQL major: 15 is Debian's (/usr/lib/postgresql/15), 14/16/17/18 the npm-embedded ones; default as `pgBinDir()`. */
  version?: PgVersion;
}

export const DEFAULT_HBA: readonly string[] = ['host all all 127.0.0.1/32 trust', 'local all all trust'];

/** The helper's own setup connections arrive over the unix socket as `postgres`; they must work whatever the case's hba. */
const SUPERUSER_HBA = 'local all postgres trust';

type StopMode = 'smart' | 'fast' | 'immediate';


/**
 * A throw-away PostgreSQL server: its own temp directory, a free loopback port, a unix socket in
 * that directory, per-case pg_hba.conf and TLS. Dispose (or `stop()`) kills it and deletes
 * everything; when the process exits first, an exit hook does the same synchronously.
 */
export class PgCluster implements AsyncDisposable {
  readonly host = '127.0.0.1';
  readonly dataDir: string;
  /** Holds the unix socket (`.s.PGSQL.<port>`); pass it as `host` to clients that take a directory. */
  readonly socketDir: string;
  readonly logFile: string;
  private currentPort = 0;
  private stopping: Promise<void> | undefined;

  private constructor(
    /** The temp directory holding everything; removed by `stop()`. */
    readonly rootDir: string,
    private readonly binDir: string,
    private readonly owner: OsUser | undefined,
    private readonly opts: PgClusterOptions,
  ) {
    this.dataDir = join(rootDir, 'data');
    this.socketDir = rootDir;
    this.logFile = join(rootDir, 'server.log');
  }

  get port(): number {
    return this.currentPort;
  }

  /** Creates, configures and starts a cluster; on any failure everything made so far is removed. */
  static async start(opts: PgClusterOptions = {}): Promise<PgCluster> {
    const owner = await serverOsUser();
    const binDir = await clusterBinDir(opts.version, owner);
    const rootDir = await mkdtemp(join(tmpdir(), 'pgward-pg-'));
    const cluster = new PgCluster(rootDir, binDir, owner, opts);
    stopAtExit(cluster);
    try {
      await cluster.ownPath(rootDir);
      await cluster.initdb();
      await cluster.startFirstTime();
      for (const user of opts.users ?? []) await cluster.createUser(user);
      return cluster;
    } catch (err) {
      await cluster.stop();
      throw err;
    }
  }

  /** `postgres://user[:password]@127.0.0.1:port/db` with no query string (append `?sslmode=…` as needed). */
  url(user: string, password?: string, db = 'postgres'): string {
    const auth = encodeURIComponent(user) + (password !== undefined ? `:${encodeURIComponent(password)}` : '');
    return `postgres://${auth}@${this.host}:${this.port}/${encodeURIComponent(db)}`;
  }

  /**
   * Runs SQL as the superuser over the unix socket, so it works whatever pg_hba.conf says for TCP.
   * One statement gives one result; a multi-statement string is allowed for setup (pg then
   * resolves to an array at runtime, which this signature does not describe).
   */
  async sql<R extends pg.QueryResultRow = pg.QueryResultRow>(
    query: string,
    db = 'postgres',
    values?: unknown[],
  ): Promise<pg.QueryResult<R>> {
    const client = new pg.Client({
      host: this.socketDir,
      port: this.port,
      user: 'postgres',
      database: db,
      connectionTimeoutMillis: 10_000,
    });
    // Without a listener, an error event (e.g. the server going away) would crash the test process.
    client.on('error', () => {});
    await client.connect();
    try {
      return await client.query<R>(query, values);
    } finally {
      await client.end().catch(() => {});
    }
  }

  async createUser(user: ClusterUser): Promise<void> {
    const parts = [`CREATE ROLE ${pg.escapeIdentifier(user.name)} LOGIN`];
    if (user.superuser) parts.push('SUPERUSER');
    if (user.password !== undefined) parts.push(`PASSWORD ${pg.escapeLiteral(user.password)}`);
    await this.sql(parts.join(' '));
  }

  /**
   * Replaces pg_hba.conf and waits until the postmaster has loaded it: pg_reload_conf() only
   * sends SIGHUP, so a connection made right after it could still meet the old rules.
   */
  async reloadHba(lines: readonly string[]): Promise<void> {
    const before = (await this.sql<{ t: string }>('SELECT pg_conf_load_time()::text AS t')).rows[0]!.t;
    await this.writeHba(lines);
    const bad = await this.sql<{ line_number: number; error: string }>(
      'SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL');
    if (bad.rows.length > 0) {
      throw new Error(`pg_hba.conf rejected: ${bad.rows.map((r) => `line ${r.line_number}: ${r.error}`).join('; ')}`);
    }
    await this.sql('SELECT pg_reload_conf()');
    // A new backend inherits the postmaster's load time, which is set in the same step that reloads hba.
    await until(async () => {
      const r = await this.sql<{ done: boolean }>('SELECT pg_conf_load_time() > $1::timestamptz AS done', 'postgres', [before]);
      return r.rows[0]!.done;
    }, 10_000, 'pg_hba.conf reload');
  }

  /** pg_terminate_backend() on every client backend (of `user`, when given); resolves to how many. */
  async terminateBackends(user?: string): Promise<number> {
    const r = await this.sql<{ n: string }>(
      `SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND ($1::text IS NULL OR usename = $1)`,
      'postgres', [user ?? null]);
    return Number(r.rows[0]!.n);
  }

  /**
   * SIGKILLs client backends (of `user`, when given), as a crash would; the postmaster then resets
   * every session and recovers. Call `waitReady()` before relying on the server again.
   */
  async killBackends(user?: string): Promise<number> {
    const r = await this.sql<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND ($1::text IS NULL OR usename = $1)`,
      'postgres', [user ?? null]);
    for (const { pid } of r.rows) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone: that is what the caller wanted.
      }
    }
    return r.rows.length;
  }

  /** Resolves once a new superuser connection can run `SELECT 1` (after a crash restart or `restart()`). */
  async waitReady(timeoutMs = 30_000): Promise<void> {
    await until(async () => {
      try {
        await this.sql('SELECT 1');
        return true;
      } catch {
        return false;
      }
    }, timeoutMs, 'server ready');
  }

  /** Stops the server but keeps its data, so a test can see the backend vanish and then `restart()` it. */
  async shutdown(mode: StopMode = 'fast'): Promise<void> {
    if (await this.isRunning()) await this.pgCtl(['stop', '-m', mode]);
  }

  /** Starts the server again on the same port (after `shutdown()`). */
  async restart(): Promise<void> {
    await this.startServer();
  }

  /** The last `lines` lines of the server log, for assertion messages. */
  async logTail(lines = 40): Promise<string> {
    const text = await readFile(this.logFile, 'utf8').catch(() => '');
    return text.split('\n').slice(-lines - 1).join('\n');
  }

  /** Kills the server (immediate mode: there is nothing worth flushing) and removes its directory. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.stopNow();
    return this.stopping;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /** The synchronous form of `stop()`, for process-exit hooks where no promise will ever settle. */
  stopSync(): void {
    if (this.stopping) return;
    this.stopping = Promise.resolve();
    forgetAtExit(this);
    spawnSync(join(this.binDir, 'pg_ctl'), ['stop', '-D', this.dataDir, '-m', 'immediate', '-w', '-t', '10'], {
      ...this.spawnIdentity(),
      stdio: 'ignore',
      timeout: 15_000,
    });
    rmSync(this.rootDir, { recursive: true, force: true });
  }

  private async stopNow(): Promise<void> {
    forgetAtExit(this);
    try {
      if (await this.isRunning()) await this.pgCtl(['stop', '-m', 'immediate']);
    } catch {
      await this.killPostmaster();
    } finally {
      await rm(this.rootDir, { recursive: true, force: true });
    }
  }

  /** Last resort when pg_ctl cannot stop it: the pid is the first line of postmaster.pid. */
  private async killPostmaster(): Promise<void> {
    const pidFile = await readFile(join(this.dataDir, 'postmaster.pid'), 'utf8').catch(() => '');
    const pid = Number.parseInt(pidFile.split('\n')[0] ?? '', 10);
    if (pid > 0) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Not running.
      }
    }
  }

  private async isRunning(): Promise<boolean> {
    return exists(join(this.dataDir, 'postmaster.pid'));
  }

  private async initdb(): Promise<void> {
    await this.exec(join(this.binDir, 'initdb'), [
      '-D', this.dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C',
    ], 120_000);
    // Our settings live in a file of their own, rewritten whenever the port changes.
    await appendFile(join(this.dataDir, 'postgresql.conf'), "\ninclude = 'pgward.conf'\n");
    if (this.opts.ssl) await this.installSsl(this.opts.ssl);
    await this.writeHba(this.opts.hba ?? DEFAULT_HBA);
  }

  /** Starts on a fresh free port, retrying when another process grabbed that port between probe and bind. */
  private async startFirstTime(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      this.currentPort = await freePort();
      await this.writeSettings();
      try {
        await this.startServer();
        return;
      } catch (err) {
        const portTaken = /could not bind|Address already in use/i.test(String((err as Error).message));
        if (!portTaken || attempt >= 3) throw err;
      }
    }
  }

  private async startServer(): Promise<void> {
    const timeoutMs = this.opts.startTimeoutMs ?? 30_000;
    // A fresh log per attempt, so the error below shows this attempt's reason and nothing older.
    await this.writeOwned(this.logFile, '', 0o600);
    try {
      await this.pgCtl(['start', '-l', this.logFile, '-t', String(Math.ceil(timeoutMs / 1000))], timeoutMs + 5_000);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- server log (${this.logFile}) ---\n${await this.logTail()}`, { cause: err });
    }
  }

  private async writeSettings(): Promise<void> {
    const settings: Record<string, string | number | boolean> = {
      listen_addresses: '127.0.0.1',
      port: this.port,
      unix_socket_directories: this.socketDir,
      max_connections: this.opts.maxConnections ?? 100,
      password_encryption: this.opts.passwordEncryption ?? 'scram-sha-256',
      // Durability is pointless for a throw-away cluster and costs seconds per test file.
      fsync: false,
      synchronous_commit: false,
      full_page_writes: false,
      ...this.sslSettings(),
      ...this.opts.settings,
    };
    const text = Object.entries(settings).map(([k, v]) => `${k} = ${confValue(v)}`).join('\n') + '\n';
    await this.writeOwned(join(this.dataDir, 'pgward.conf'), text, 0o600);
  }

  private sslSettings(): Record<string, string | boolean> {
    if (!this.opts.ssl) return {};
    // Relative paths resolve against the data directory, where installSsl put the copies.
    const s: Record<string, string | boolean> = { ssl: true, ssl_cert_file: 'server.crt', ssl_key_file: 'server.key' };
    if (this.opts.ssl.ca) s.ssl_ca_file = 'root.crt';
    return s;
  }

  /** PostgreSQL refuses a key that is not 0600 and owned by its own user, hence copies rather than the caller's files. */
  private async installSsl(ssl: ClusterSsl): Promise<void> {
    const copies: Array<[string, string, number]> = [[ssl.cert, 'server.crt', 0o644], [ssl.key, 'server.key', 0o600]];
    if (ssl.ca) copies.push([ssl.ca, 'root.crt', 0o644]);
    for (const [from, name, mode] of copies) {
      const to = join(this.dataDir, name);
      await copyFile(from, to);
      await chmod(to, mode);
      await this.ownPath(to);
    }
  }

  private async writeHba(lines: readonly string[]): Promise<void> {
    const text = [SUPERUSER_HBA, ...lines].join('\n') + '\n';
    await this.writeOwned(join(this.dataDir, 'pg_hba.conf'), text, 0o600);
  }

  private async writeOwned(path: string, content: string, mode: number): Promise<void> {
    await writeFile(path, content, { mode });
    await chmod(path, mode);
    await this.ownPath(path);
  }

  private async ownPath(path: string): Promise<void> {
    if (this.owner) await chown(path, this.owner.uid, this.owner.gid);
  }

  private pgCtl(args: string[], timeoutMs = 30_000): Promise<void> {
    return this.exec(join(this.binDir, 'pg_ctl'), ['-D', this.dataDir, '-w', ...args], timeoutMs);
  }

  private async exec(file: string, args: string[], timeoutMs: number): Promise<void> {
    try {
      await execFileAsync(file, args, { ...this.spawnIdentity(), timeout: timeoutMs, maxBuffer: 16 << 20 });
    } catch (err) {
      const e = err as Error & { code?: number | string; signal?: string; stdout?: string; stderr?: string };
      const why = e.signal ? `killed by ${e.signal}` : `exit ${e.code ?? '?'}`;
      throw new Error(`${basename(file)} ${args.join(' ')} failed (${why})\n${e.stderr ?? ''}${e.stdout ?? ''}`, { cause: err });
    }
  }

  /** Server-side programs run as the unprivileged owner (PostgreSQL refuses root) in a clean environment. */
  private spawnIdentity(): { cwd: string; env: NodeJS.ProcessEnv; uid?: number; gid?: number } {
    // cwd inside our directory: the owner may not be allowed into the caller's cwd (e.g. /root).
    const base = { cwd: this.rootDir, env: serverEnv() };
    return this.owner ? { ...base, uid: this.owner.uid, gid: this.owner.gid } : base;
  }
}

/** PG* variables of the caller (PGDATA, PGPORT, PGHOST…) would silently redirect initdb and pg_ctl. */
function serverEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  env.LC_ALL = 'C';
  return env;
}

/** postgresql.conf value syntax: numbers and booleans bare, strings single-quoted with '' escapes. */
function confValue(v: string | number | boolean): string {
  if (typeof v === 'number') return String(v);
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}
