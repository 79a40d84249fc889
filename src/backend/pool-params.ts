import { parametersRequest, query, setConfigQuery } from './exchange.js';

/**
 * The session parameters of a pooled connection across sessions (SPEC §8). A connection's reset
 * (`DISCARD ALL`) is followed, in the same round trip, by `set_config` of the parameters its last
 * session applied: connection churn from one application (the same `application_name`,
 * `client_encoding`…, session after session) then finds them in place and is handed its
 * connection without a round trip of its own. A session that wants other parameters gets the
 * reset again before its own are applied, so none of an earlier session's are left over.
 */

/** The requests to send a connection before it serves a session that wants `apply`. */
export interface ParameterAsk {
  requests: Buffer[];
  /** The first request is the reset again (an error there is the connection's, not the session's). */
  resets: boolean;
}

/**
 * What to ask a connection whose reset left `applied` set (see above) and whose backend last
 * reported `reported`, before it serves a session that wants `apply`; undefined: nothing.
 */
export function parameterAsk(
  apply: ReadonlyMap<string, string>,
  applied: ReadonlyMap<string, string> | undefined,
  reported: ReadonlyMap<string, string>,
  reset: string,
): ParameterAsk | undefined {
  if (!applied || applied.size === 0) {
    const request = parametersRequest(apply, reported);
    return request && { requests: [request], resets: false };
  }
  if (sameParameters(apply, applied)) return undefined;
  const requests = [query(reset)];
  if (apply.size > 0) requests.push(query(setConfigQuery(apply)));
  return { requests, resets: true };
}

/**
 * The reset of a connection whose session applied `applied`, and their `set_config` after it: one
 * buffer with `readies` queries. Built once per reset statement and per `applied` (a connection
 * serving one application keeps the same map, see `lend`), not at every release.
 */
export function resetRequest(reset: string, applied: ReadonlyMap<string, string> | undefined): { raw: Buffer; readies: number } {
  if (resetQuery?.sql !== reset) resetQuery = { sql: reset, raw: { raw: query(reset), readies: 1 } };
  if (!applied || applied.size === 0) return resetQuery.raw;
  let made = withParameters.get(applied);
  if (!made || made.sql !== reset) {
    made = { sql: reset, raw: { raw: Buffer.concat([resetQuery.raw.raw, query(setConfigQuery(applied))]), readies: 2 } };
    withParameters.set(applied, made);
  }
  return made.raw;
}

let resetQuery: { sql: string; raw: { raw: Buffer; readies: number } } | undefined;
const withParameters = new WeakMap<ReadonlyMap<string, string>, { sql: string; raw: { raw: Buffer; readies: number } }>();

export function sameParameters(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const k of a.keys()) if (b.get(k) !== a.get(k)) return false;
  return true;
}
