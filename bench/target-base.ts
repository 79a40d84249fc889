/** What every target is, and the helpers the target modules share. */
import { TARGET_TLS, type TargetName } from './config.js';
import { waitForPort, type Service } from './processes.js';

/** A server clients can be pointed at; `pid` is the proxy process whose CPU time and memory are read. */
export interface Target extends AsyncDisposable {
  name: TargetName;
  port: number;
  pid?: number;
  /** libpq settings its clients need: `PGSSLMODE`, and `PGPASSWORD` (a JWT for pgward). */
  clientEnv: Record<string, string>;
}

/** A target this machine or this pgward cannot have (a tool not installed, a flag not built yet): noted, not failed. */
export class SkipTarget extends Error {}

/** Client sessions a target must hold at once beyond pgbench's (the memory cell's idle sessions). */
export interface Capacity {
  sessions: number;
}

/** Nothing beyond pgbench's clients: every proxy at its defaults (PgBouncer at today's sizes). */
export const SMALL: Capacity = { sessions: 0 };

/** libpq's settings for a target's clients: TLS when it has TLS to the client, a password (pgward's is a token). */
export function clientEnv(name: TargetName, password?: string): Record<string, string> {
  return {
    PGSSLMODE: TARGET_TLS[name] === 'none' ? 'disable' : 'require',
    ...(password !== undefined ? { PGPASSWORD: password } : {}),
  };
}

/** Waits for the service's port; on failure stops the service and says why (its exit and output). */
export async function serviceTarget(name: TargetName, service: Service, port: number, env: Record<string, string>): Promise<Target> {
  try {
    await waitForPort(port, service, 20_000);
  } catch (err) {
    await service.stop();
    throw new Error((err as Error).message, { cause: err });
  }
  return { name, port, pid: service.child.pid, clientEnv: env, [Symbol.asyncDispose]: () => service.stop() };
}
