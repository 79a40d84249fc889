import type { BackendTarget } from './url.js';

/**
 * A copy of `t`, its `params` too, made field by field (the fields `t` has, and no others). Not
 * `{ ...t }`: on Node 20 every property later added to a spread copy (a route's id, the session's
 * user) takes V8's slow path, microseconds each, where adding it to this copy does not.
 */
export function copyTarget(t: BackendTarget): BackendTarget {
  const params: Record<string, string> = {};
  for (const k of Object.keys(t.params)) params[k] = t.params[k]!;
  const c: BackendTarget = { host: t.host, port: t.port, sslmode: t.sslmode, connectTimeoutMs: t.connectTimeoutMs, params };
  if (t.user !== undefined) c.user = t.user;
  if (t.password !== undefined) c.password = t.password;
  if (t.database !== undefined) c.database = t.database;
  if (t.sslrootcert !== undefined) c.sslrootcert = t.sslrootcert;
  if (t.sslcert !== undefined) c.sslcert = t.sslcert;
  if (t.sslkey !== undefined) c.sslkey = t.sslkey;
  if (t.sslpassword !== undefined) c.sslpassword = t.sslpassword;
  if (t.applicationName !== undefined) c.applicationName = t.applicationName;
  if (t.options !== undefined) c.options = t.options;
  if (t.maxProtocolMinor !== undefined) c.maxProtocolMinor = t.maxProtocolMinor;
  if (t.pool !== undefined) c.pool = t.pool;
  if (t.routeId !== undefined) c.routeId = t.routeId;
  if (t.passwordFromCommand !== undefined) c.passwordFromCommand = t.passwordFromCommand;
  return c;
}

/** `t` for one session's login: a copy (see copyTarget) with the session's user, database and password. */
export function loginTarget(t: BackendTarget, user: string, database: string, password: string | undefined): BackendTarget {
  const c = copyTarget(t);
  c.user = user;
  c.database = database;
  c.password = password;
  return c;
}
