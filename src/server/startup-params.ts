import type { BackendTarget } from '../backend/url.js';
import { PgError, SqlState } from '../protocol/index.js';
import { stripTraceparentOption } from '../telemetry/traceparent.js';

/** Parameters that select or describe the connection, never copied from the client as is. */
const CONNECTION_PARAMS = new Set(['user', 'database', 'replication']);

/**
 * The startup parameters sent to the backend: the client's, less those the proxy owns, with the
 * user and database the auth provider chose and the target URL's own settings on top.
 */
export function backendStartupParams(
  client: ReadonlyMap<string, string>,
  target: BackendTarget,
  user: string,
  database: string,
  opts: { reservedParams: ReadonlySet<string>; allowReplication: boolean },
): Map<string, string> {
  const out = new Map<string, string>([
    ['user', user],
    ['database', database],
  ]);
  // By key: an entry iteration makes an array per parameter.
  for (const k of client.keys()) {
    const name = k.toLowerCase();
    if (CONNECTION_PARAMS.has(name) || opts.reservedParams.has(name) || name.startsWith('_pq_.')) continue;
    out.set(k, client.get(k)!);
  }
  // The trace context is the proxy's; other PostgreSQL-compatible servers may refuse the setting.
  const options = out.get('options');
  if (options !== undefined) {
    const stripped = stripTraceparentOption(options);
    if (stripped) out.set('options', stripped);
    else out.delete('options');
  }
  if (opts.allowReplication && client.has('replication')) out.set('replication', client.get('replication')!);
  if (target.applicationName !== undefined) out.set('application_name', target.applicationName);
  if (target.options !== undefined) out.set('options', [out.get('options'), target.options].filter(Boolean).join(' '));
  const targetParams = target.params;
  if (targetParams) for (const k of Object.keys(targetParams)) out.set(k, targetParams[k]!);
  return out;
}

/** The values PostgreSQL reads as "not a replication connection" (its parse_bool, plus none). */
const NOT_REPLICATION = /^(f|fa|fal|fals|false|n|no|of|off|0)$/i;

/**
 * A `replication` startup parameter (`true`, `database`…) asks for a walsender, whose commands
 * (IDENTIFY_SYSTEM, START_REPLICATION) the relay would otherwise send on as SQL: refused.
 */
export function replicationRefusal(client: ReadonlyMap<string, string>, allowed: boolean): PgError | undefined {
  const value = client.get('replication');
  if (allowed || value === undefined || NOT_REPLICATION.test(value)) return undefined;
  return new PgError('FATAL', SqlState.FeatureNotSupported, 'replication connections are not supported by pgward', {
    hint: 'Connect to the PostgreSQL server directly for replication and pg_basebackup.',
  });
}
