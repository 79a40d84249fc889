/**
 * PgBouncer in session mode, the comparison for every pgward row: plain, or (`pgbouncer-tls`) with
 * TLS to its clients and to PostgreSQL on pgward's certificate. Its clients log in as
 * BENCH_PGBOUNCER_AUTH says: without a password (`trust`, the default), or with the one below.
 */
import { chmod, chown, copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serverOsUser, whichExecutable } from '../test/helpers/pg-cluster.js';
import { freePort } from '../test/helpers/ports.js';
import { isExecutable, spawnService } from './processes.js';
import type { PgbouncerAuth } from './config.js';
import type { BenchContext } from './setup.js';
import { clientEnv, serviceTarget, SkipTarget, type Capacity, type Target } from './target-base.js';

/** pgbench's password when PgBouncer asks for one (not a secret: a throw-away cluster's bench user). */
const CLIENT_PASSWORD = 'bench-password';

export async function startPgbouncer(name: 'pgbouncer' | 'pgbouncer-tls', ctx: BenchContext, capacity: Capacity): Promise<Target> {
  const bin = (await whichExecutable('pgbouncer')) ?? ((await isExecutable('/usr/sbin/pgbouncer')) ? '/usr/sbin/pgbouncer' : undefined);
  if (!bin) throw new SkipTarget('pgbouncer is not installed (not on PATH, no /usr/sbin/pgbouncer)');
  const [port, owner] = await Promise.all([freePort(), serverOsUser()]);
  const dir = await mkdtemp(join(tmpdir(), 'pgward-bouncer-'));
  try {
    const ini = join(dir, 'pgbouncer.ini');
    const files = [dir, ini, join(dir, 'userlist.txt')];
    const auth = ctx.config.pgbouncerAuth;
    await writeFile(join(dir, 'userlist.txt'), `"postgres" "${auth === 'trust' ? '' : CLIENT_PASSWORD}"\n`);
    let tls: { cert: string; key: string } | undefined;
    if (name === 'pgbouncer-tls') {
      // Copies it can read: as root PgBouncer runs as the cluster's user, who cannot read ours.
      tls = { cert: join(dir, 'server.crt'), key: join(dir, 'server.key') };
      await copyFile(ctx.tls!.cert, tls.cert);
      await copyFile(ctx.tls!.key, tls.key);
      await chmod(tls.key, 0o600);
      files.push(tls.cert, tls.key);
    }
    await writeFile(ini, pgbouncerIni({ backendPort: ctx.cluster.port, listenPort: port, authFile: join(dir, 'userlist.txt'), auth, tls, capacity }));
    // PgBouncer refuses to run as root; as root we run it as the cluster's unprivileged user.
    if (owner) for (const p of files) await chown(p, owner.uid, owner.gid);
    const service = spawnService(bin, [ini], { cwd: dir, uid: owner?.uid, gid: owner?.gid, ownSession: ctx.config.proxySession === 'own' });
    const target = await serviceTarget(name, service, port, clientEnv(name, auth === 'trust' ? undefined : CLIENT_PASSWORD));
    return {
      ...target,
      [Symbol.asyncDispose]: async () => {
        await target[Symbol.asyncDispose]();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

export interface PgbouncerIniOptions {
  backendPort: number;
  listenPort: number;
  authFile: string;
  /** `auth_type`; trust unless given (the auth file still lists the user). */
  auth?: PgbouncerAuth;
  /** TLS to clients (`require`, this certificate) and to PostgreSQL (`require`). */
  tls?: { cert: string; key: string };
  capacity: Capacity;
}

/**
 * Session mode; room for the capacity's sessions, each of which holds a server connection while
 * it lasts (session mode), plus slack for the other cells' clients.
 */
export function pgbouncerIni(o: PgbouncerIniOptions): string {
  const tls = o.tls
    ? `client_tls_sslmode = require
client_tls_cert_file = ${o.tls.cert}
client_tls_key_file = ${o.tls.key}
server_tls_sslmode = require
`
    : '';
  return `[databases]
postgres = host=127.0.0.1 port=${o.backendPort} dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${o.listenPort}
; no unix socket: nothing here uses it and the default directory may not be writable
unix_socket_dir =
; trust still needs the user listed in auth_file
auth_type = ${o.auth ?? 'trust'}
auth_file = ${o.authFile}
pool_mode = session
max_client_conn = ${Math.max(200, o.capacity.sessions + 100)}
default_pool_size = ${Math.max(40, o.capacity.sessions + 10)}
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
${tls}`;
}
