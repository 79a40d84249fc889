/**
 * Child processes of the bench: long-running services (the proxies) and one-shot commands
 * (pgbench, the pgward CLI), with the environment they run in.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access } from 'node:fs/promises';
import { connect } from 'node:net';

export interface Service {
  child: ChildProcess;
  /** Exit description once the process has ended, else undefined. */
  exited(): string | undefined;
  /** Last few KB of stdout+stderr, for failure messages. */
  output(): string;
  stop(): Promise<void>;
}

export interface ServiceOptions {
  cwd: string;
  uid?: number;
  gid?: number;
  env?: NodeJS.ProcessEnv;
  /**
   * Run in a session of its own (`setsid`), as a service does, rather than in the bench's. With the
   * kernel's autogroup scheduling (`/proc/sys/kernel/sched_autogroup_enabled`, on by default on
   * desktop and many server kernels) CPU time is shared fairly between sessions before tasks:
   * every PostgreSQL backend calls `setsid` and is a group of its own, so a proxy in the bench's
   * session shares one group's time with pgbench, which no deployment does.
   */
  ownSession: boolean;
}

/** Services still running; killed synchronously if the bench itself dies first. */
const services = new Set<ChildProcess>();
let hooksInstalled = false;

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  const killServices = (): void => {
    for (const child of services) child.kill('SIGKILL');
  };
  process.once('exit', killServices);
  // A signal ends the process without 'exit', and services in sessions of their own do not get the
  // terminal's ^C: kill them, then let the signal take its course (the cluster helper stops the
  // cluster on it once it is the only listener).
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    const onSignal = (): void => {
      killServices();
      process.removeListener(signal, onSignal);
      process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

export function spawnService(file: string, args: string[], opts: ServiceOptions): Service {
  installHooks();
  const { ownSession, env, ...rest } = opts;
  const child = spawn(file, args, {
    ...rest,
    env: { ...cleanEnv(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: ownSession,
  });
  services.add(child);
  let tail = '';
  const keep = (chunk: Buffer): void => {
    tail = (tail + chunk.toString('utf8')).slice(-4096);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let exit: string | undefined;
  const closed = new Promise<void>((resolve) => {
    child.once('error', (err) => {
      exit = `could not start: ${err.message}`;
      resolve();
    });
    child.once('exit', (code, signal) => {
      exit = signal ? `killed by ${signal}` : `exited with code ${code}`;
      resolve();
    });
  });
  closed.then(() => services.delete(child), () => {});
  const stop = async (): Promise<void> => {
    if (exit !== undefined) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await closed;
    clearTimeout(timer);
  };
  return { child, exited: () => exit, output: () => tail, stop };
}

export async function waitForPort(port: number, service: Service, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const exit = service.exited();
    if (exit !== undefined) throw new Error(`${exit}: ${failureReason(service.output())}`);
    if (await accepts(port)) return;
    if (Date.now() > deadline) throw new Error(`port ${port} not accepting after ${timeoutMs} ms: ${failureReason(service.output())}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export interface ProcessResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end (or `timeoutMs`), in the clean environment plus `env`. */
export function runProcess(file: string, args: string[], timeoutMs: number, env: NodeJS.ProcessEnv = {}): Promise<ProcessResult> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { env: { ...cleanEnv(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => {
      stderr += `\nkilled after ${timeoutMs} ms`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      resolve({ code: 127, stdout, stderr: `${stderr}${err.message}` });
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 128, stdout, stderr });
    });
  });
}

/**
 * No inherited PG* settings (they would redirect pgbench) and no OTEL_* ones (they would turn
 * tracing on); TLS off unless a target's client settings turn it on.
 */
export function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG') && !k.startsWith('OTEL_')) env[k] = v;
  return { ...env, PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '10' };
}

export async function isExecutable(path: string): Promise<boolean> {
  return access(path, fsConstants.X_OK).then(() => true, () => false);
}

/** The most telling line of a dead process's output: the first error-looking one (a stack trace's message), else the last. */
export function failureReason(output: string): string {
  const lines = output.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines.find((l) => /error|fatal|refus|invalid/i.test(l)) ?? lines.at(-1) ?? '(no output)';
}

export function lastLines(text: string, n: number): string {
  return text.trim().split('\n').slice(-n).join(' | ');
}
