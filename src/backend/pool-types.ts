// What the pool (pool.ts) takes and gives.
import type { IdleLook } from './liveness.js';
import type { BackendConnection, LoginOptions } from './login.js';
import type { PoolSettings } from './pool-settings.js';
import type { BackendTarget } from './url.js';

/** What a session asks the pool for. */
export interface PoolRequest {
  /** The startup parameters a new connection logs in with: the target's own, never a client's. */
  params: Map<string, string>;
  /** The session's own parameters, applied with `set_config` to whichever connection it gets. */
  apply: ReadonlyMap<string, string>;
  password?: string;
  signal?: AbortSignal;
}

/** A connection lent to one session. */
export interface Lease {
  readonly connection: BackendConnection;
  /** Logged in for this session (else reused from an earlier one). */
  readonly fresh: boolean;
  /**
   * Gives the connection back: when `reusable` (the session ended with it idle and at a message
   * boundary) it is reset and kept for the next session, else closed. `parameters`: the values
   * the backend last reported to the session.
   */
  release(reusable: boolean, parameters?: ReadonlyMap<string, string>): void;
}

export type AcquireResult = 'reused' | 'new' | 'timeout';

export interface PoolStats {
  /** `user@host:port/database`: never a password. */
  target: string;
  active: number;
  idle: number;
  waiting: number;
  maxSize: number;
}

export interface PoolEvents {
  acquired?(target: string, result: AcquireResult, waitedSeconds: number): void;
  /** A pooled connection was closed (why: `idle timeout`, `reset failed`, …). */
  closed?(target: string, why: string): void;
}

export interface PoolOptions {
  settings: PoolSettings;
  events?: PoolEvents;
  /** How a new connection is made (tests may wrap it). */
  connect?: (target: BackendTarget, opts: LoginOptions) => Promise<BackendConnection>;
  /** How long the reset, or applying a session's parameters, may take. */
  exchangeTimeoutMs?: number;
  /** An idle connection used within this long is vouched for by a look at its descriptor; one idle longer is asked with a Sync. */
  checkAfterMs?: number;
  /** How an idle connection is looked at (tests may replace it); undefined: it cannot be, so it is asked. */
  lookAtIdle?: (socket: BackendConnection['socket']) => IdleLook | undefined;
}
