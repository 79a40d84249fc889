/**
 * What every target shares: the throw-away cluster, one TLS certificate (PostgreSQL, PgBouncer and
 * pgward all present it), a signing key and a JWT for pgward's logins, and which pool flags the
 * pgward under test knows.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TestCA } from '../test/helpers/certs.js';
import { PgCluster } from '../test/helpers/pg-cluster.js';
import { maxConnectionsFor, type BenchConfig } from './config.js';
import { helpListsFlag } from './parse.js';
import { lastLines, runProcess } from './processes.js';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
export const pgwardBin = join(repoRoot, 'bin', 'pgward.js');

export interface TlsFiles {
  cert: string;
  key: string;
  /** The CA certificate (PEM text) that signed `cert`, for clients that verify. */
  caPem: string;
}

export interface BenchContext extends AsyncDisposable {
  config: BenchConfig;
  cluster: PgCluster;
  /** Scratch directory for configuration files; removed on dispose. */
  workDir: string;
  /** Undefined when no certificate could be made (then `tlsProblem` says why). */
  tls?: TlsFiles;
  tlsProblem?: string;
  /** Public key pgward verifies tokens with. */
  signingKey: string;
  /** A JWT for the user `postgres`, valid for the whole run: the password of every pgward login. */
  token: string;
  /** The `pgward start` pool flags this checkout has (backend pooling, SPEC §8, may not be built yet). */
  pgwardFlags: { poolMode: boolean; poolMaxSize: boolean };
}

export async function setUp(config: BenchConfig): Promise<BenchContext> {
  const workDir = await mkdtemp(join(tmpdir(), 'pgward-bench-'));
  let cluster: PgCluster | undefined;
  try {
    let tls: TlsFiles | undefined;
    let tlsProblem: string | undefined;
    try {
      // In the scratch directory, which dispose removes with everything else.
      const ca = await TestCA.create(await mkdtemp(join(workDir, 'ca-')));
      const leaf = await ca.issue('server');
      tls = { ...leaf, caPem: ca.caPem };
    } catch (err) {
      tlsProblem = `no certificate (${(err as Error).message.split('\n')[0]})`;
    }
    cluster = await PgCluster.start({
      maxConnections: maxConnectionsFor(config),
      ...(tls ? { ssl: { cert: tls.cert, key: tls.key } } : {}),
    });
    const keys = join(workDir, 'keys');
    await pgwardCli(['keygen', '--out', keys]);
    const token = (await pgwardCli(['token', '--key', join(keys, 'private.pem'), '--sub', 'postgres', '--ttl', '7d'])).trim();
    const help = await pgwardCli(['start', '--help']);
    const started = cluster;
    return {
      config,
      cluster,
      workDir,
      tls,
      tlsProblem,
      signingKey: join(keys, 'public.pem'),
      token,
      pgwardFlags: { poolMode: helpListsFlag(help, 'poolMode'), poolMaxSize: helpListsFlag(help, 'poolMaxSize') },
      [Symbol.asyncDispose]: async () => {
        await started.stop();
        await rm(workDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await cluster?.stop();
    await rm(workDir, { recursive: true, force: true });
    throw err;
  }
}

/** Runs the pgward CLI of this checkout and returns its stdout; a failure throws with its stderr. */
async function pgwardCli(args: string[]): Promise<string> {
  const result = await runProcess(process.execPath, [pgwardBin, ...args], 60_000);
  if (result.code !== 0) throw new Error(`pgward ${args[0]} failed (${result.code}): ${lastLines(result.stderr, 3)}`);
  return result.stdout;
}
