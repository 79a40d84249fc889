import { spawn } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { delimiter, join } from 'node:path';

export interface PsqlResult {
  /** Exit status; a signal number is reported as 128 + n, a timeout as 124 (like timeout(1)). */
  code: number;
  stdout: string;
  stderr: string;
}

export interface PsqlOptions {
  /** Kill psql after this long (default 30 s). */
  timeoutMs?: number;
  /** Replaces the default leading flags `-X -v ON_ERROR_STOP=1 -At`. */
  flags?: string[];
}

export const DEFAULT_PSQL_FLAGS: readonly string[] = ['-X', '-v', 'ON_ERROR_STOP=1', '-At'];

/**
 * Runs psql with `args` (typically a connection URL plus `-c SQL`) and never throws for a
 * non-zero exit: the test asserts on `code`/`stderr`. `input` goes to stdin (e.g. COPY data).
 * The caller's PG* variables are dropped so a developer's environment cannot change the outcome.
 */
export async function runPsql(
  args: string[],
  env: Record<string, string> = {},
  input?: string,
  opts: PsqlOptions = {},
): Promise<PsqlResult> {
  const bin = await psqlPath();
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const child = spawn(bin, [...(opts.flags ?? DEFAULT_PSQL_FLAGS), ...args], {
    env: psqlEnv(env),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  // psql may exit before reading all input (e.g. a failed connection): EPIPE is not our failure.
  child.stdin.on('error', () => {});
  child.stdin.end(input ?? '');

  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  try {
    const code = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (status, signal) => resolve(status ?? 128 + signalNumber(signal)));
    });
    if (timedOut) return { code: 124, stdout, stderr: `${stderr}\n[runPsql] killed after ${timeoutMs} ms` };
    return { code, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

function psqlEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  return { ...env, PGCONNECT_TIMEOUT: '10', ...extra };
}

function signalNumber(signal: NodeJS.Signals | null): number {
  return signal ? osConstants.signals[signal] : 0;
}

let psqlPromise: Promise<string> | undefined;

/** psql on PATH, else Debian's /usr/bin/psql wrapper. */
export function psqlPath(): Promise<string> {
  psqlPromise ??= (async () => {
    const candidates = (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, 'psql'));
    for (const path of [...candidates, '/usr/bin/psql']) {
      if (await isExecutable(path)) return path;
    }
    throw new Error('psql not found on PATH or at /usr/bin/psql (Debian: apt-get install postgresql-client)');
  })();
  return psqlPromise;
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}
