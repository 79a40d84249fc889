import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../../bin/pgward.js', import.meta.url));

export interface PgwardProcess extends AsyncDisposable {
  child: ChildProcess;
  port: number;
  /** JSON log events written so far. */
  events: Record<string, unknown>[];
  stderr: string[];
  /** Resolves with the first event (past or future) with this message. */
  waitFor(msg: string, timeoutMs?: number, since?: number): Promise<Record<string, unknown>>;
  signal(sig: NodeJS.Signals): void;
  exited: Promise<number | null>;
}

/** Runs `pgward start` as a real process with JSON logs on stdout; resolves once it listens. */
export async function startPgwardProcess(args: string[], env: NodeJS.ProcessEnv = {}): Promise<PgwardProcess> {
  const child = spawn(process.execPath, [BIN, 'start', '--logFormat', 'json', '--bindAddr', '127.0.0.1:0', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const events: Record<string, unknown>[] = [];
  const stderr: string[] = [];
  const waiters: { msg: string; since: number; resolve: (e: Record<string, unknown>) => void }[] = [];
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString('utf8');
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let e: Record<string, unknown>;
      try {
        e = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      events.push(e);
      for (const w of [...waiters]) {
        if (e.msg === w.msg && events.length - 1 >= w.since) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(e);
        }
      }
    }
  });
  child.stderr!.on('data', (d: Buffer) => stderr.push(d.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const waitFor = (msg: string, timeoutMs = 10_000, since = 0) => {
    const found = events.slice(since).find((e) => e.msg === msg);
    if (found) return Promise.resolve(found);
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "${msg}" log event within ${timeoutMs} ms; stderr: ${stderr.join('')}`)), timeoutMs);
      waiters.push({ msg, since, resolve: (e) => (clearTimeout(timer), resolve(e)) });
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`pgward exited before "${msg}"; stderr: ${stderr.join('')}`));
      });
    });
  };

  const listening = await waitFor('pgward listening');
  const port = Number(String(listening.address).split(':').pop());
  const dispose = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  };
  return { child, port, events, stderr, waitFor, signal: (s) => child.kill(s), exited, [Symbol.asyncDispose]: dispose };
}
