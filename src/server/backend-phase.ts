import { connectBackend, type BackendConnection } from '../backend/login.js';
import type { BackendPool, Lease } from '../backend/pool.js';
import type { PoolRequest } from '../backend/pool-types.js';
import type { BackendTarget } from '../backend/url.js';
import { backendStartupParams } from './startup-params.js';

/** How a session got its backend connection: from the pool (`reused` or `new`), or its own (`unpooled`). */
export type BackendSource = 'reused' | 'new' | 'unpooled';

export interface BackendHandle {
  connection: BackendConnection;
  source: BackendSource;
  /** Set for a pooled connection: gives it back when the session ends. */
  lease?: Lease;
}

export interface BackendRequest {
  target: BackendTarget;
  /** The full startup parameters for the session (the client's, the target's, what middleware added). */
  params: Map<string, string>;
  user: string;
  database: string;
  reserved: { reservedParams: ReadonlySet<string>; allowReplication: boolean };
  /** The login's abort: its signal is asked for only by what dials or waits. */
  abort?: { readonly signal: AbortSignal };
}

/** Parameters `set_config` can give an open session; others (e.g. `crdb:remote_addr`) need a connection of the session's own. */
const SETTABLE = /^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)*$/;

/** Startup parameters that only a new backend process can take. */
const STARTUP_ONLY = new Set(['options', 'replication']);

const NO_PARAMS: ReadonlyMap<string, string> = new Map();

/**
 * Splits a session's startup parameters for the pool: what a pooled connection logs in with (the
 * target's own) and what is applied to it with `set_config` (the session's own). Undefined when
 * the session needs a connection of its own (SPEC §8: `options`, `replication`, a parameter that
 * cannot be set on an open session).
 */
export function poolableParams(req: BackendRequest): { login: Map<string, string>; apply: Map<string, string> } | undefined {
  const login = backendStartupParams(NO_PARAMS, req.target, req.user, req.database, req.reserved);
  const apply = new Map<string, string>();
  for (const name of req.params.keys()) {
    const value = req.params.get(name)!;
    if (login.get(name) === value) continue;
    if (login.has(name) || STARTUP_ONLY.has(name.toLowerCase()) || !SETTABLE.test(name)) return undefined;
    apply.set(name, value);
  }
  for (const name of login.keys()) if (!req.params.has(name)) return undefined;
  return { login, apply };
}

/**
 * The backend phase of a session: a connection from the pool when the target pools and the
 * session's parameters allow it, else a new connection of its own, as without a pool.
 */
export function obtainBackend(pool: BackendPool | undefined, req: BackendRequest): Promise<BackendHandle> {
  const { target } = req;
  const split = pool && pool.settingsFor(target).mode === 'session' ? poolableParams(req) : undefined;
  // Not an async function: a continuation costs less than a suspended frame, and a login makes one.
  if (!pool || !split) {
    return connectBackend(target, { params: req.params, password: target.password, signal: req.abort?.signal }).then(unpooled);
  }
  return pool.acquire(target, new PooledRequest(split.login, split.apply, target.password, req.abort)).then(pooled);
}

function unpooled(connection: BackendConnection): BackendHandle {
  return { connection, source: 'unpooled' };
}

function pooled(lease: Lease): BackendHandle {
  return { connection: lease.connection, source: lease.fresh ? 'new' : 'reused', lease };
}

/**
 * What a session asks the pool for. Its signal is read by the pool only to dial or to wait for a
 * slot (a connection handed out at once needs none), so the login's abort makes one only then: a
 * getter on a class, not on an object literal made per login (a slower object to make).
 */
class PooledRequest implements PoolRequest {
  constructor(
    readonly params: Map<string, string>,
    readonly apply: ReadonlyMap<string, string>,
    readonly password: string | undefined,
    private readonly abort: { readonly signal: AbortSignal } | undefined,
  ) {}

  get signal(): AbortSignal | undefined {
    return this.abort?.signal;
  }
}
