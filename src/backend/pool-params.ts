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

/** The reset of a connection whose session applied `applied`, and their `set_config` after it. */
export function resetRequests(reset: string, applied: ReadonlyMap<string, string> | undefined): Buffer[] {
  return applied && applied.size > 0 ? [query(reset), query(setConfigQuery(applied))] : [query(reset)];
}

function sameParameters(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}
