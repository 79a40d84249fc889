import { createHash, randomBytes } from 'node:crypto';
import type { BackendTarget } from './url.js';
import { formatHostPort } from '../util/host-port.js';
import { BoundedMemo } from '../util/bounded-memo.js';

/** Keeps passwords out of pool keys (a digest with a per-process salt, never printed). */
const SALT = randomBytes(16);

const NO_PARAMS: readonly [string, string][] = [];

/** Everything that decides who a connection is on the backend, and how it was reached. */
export function targetKey(t: BackendTarget): string {
  const credential = t.passwordFromCommand ? 'command' : credentialDigest(t.password ?? '', t.sslpassword ?? '');
  const params = t.params ? Object.entries(t.params).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) : NO_PARAMS;
  return JSON.stringify([
    t.host, t.port, t.user, t.database, t.sslmode, t.sslrootcert, t.sslcert, t.sslkey,
    t.applicationName, t.options, t.maxProtocolMinor, params, t.routeId, credential,
  ]);
}

/**
 * The digests of the few credentials a configuration has, kept so a login does not hash its
 * target's password again (bounded: templated passwords could be many).
 */
const credentialDigests = new BoundedMemo<string, string>(256);

function credentialDigest(password: string, sslpassword: string): string {
  return credentialDigests.get(`${password}\0${sslpassword}`, (both) => createHash('sha256').update(SALT).update(both).digest('base64'));
}

/** `user@host:port/database`, as metrics and the console show a target. */
export function targetLabel(t: BackendTarget): string {
  const user = t.user ?? '';
  return `${user}@${formatHostPort(t.host, t.port)}/${t.database ?? user}`;
}
