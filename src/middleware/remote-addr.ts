import type { BackendStartup, Middleware } from '../pipeline/middleware.js';
import { formatHostPort as hostPort } from '../util/host-port.js';

export interface RemoteAddrOptions {
  /**
   * The startup parameter that carries the client address (default `crdb:remote_addr`, which
   * CockroachDB honours when started with `COCKROACH_TRUST_CLIENT_PROVIDED_SQL_REMOTE_ADDR=true`).
   * For PostgreSQL use a custom placeholder variable with a dot, e.g. `pgward.remote_addr`, read
   * back with `current_setting('pgward.remote_addr')`.
   */
  param?: string;
}

export const DEFAULT_REMOTE_ADDR_PARAM = 'crdb:remote_addr';

/** Parameters that select the connection itself and cannot carry the address. */
const CONNECTION_PARAMS = new Set(['user', 'database', 'options', 'replication']);

/** Why `param` cannot be used as the address parameter, or undefined when it can. */
export function checkRemoteAddrParam(param: string): string | undefined {
  if (param.length === 0) return 'must not be empty';
  if (param.length > 256) return 'must be at most 256 characters';
  if (/[\s\0=]/.test(param)) return 'must not contain whitespace, "=" or NUL';
  if (CONNECTION_PARAMS.has(param.toLowerCase())) return `"${param}" is a connection parameter`;
  if (param.toLowerCase().startsWith('_pq_.')) return 'must not be a protocol option (_pq_.)';
  return undefined;
}

/**
 * `remote-addr`: adds the client's address (the PROXY protocol source when that is enabled) to
 * the backend's startup parameters as `host:port` — IPv6 hosts in brackets, the form
 * CockroachDB parses with `net.SplitHostPort` (`[2001:db8::1]:5432`). IPv4-mapped IPv6
 * addresses are reported as IPv4 and zone ids are dropped.
 *
 * Whatever the client sent under that name, in any letter case, is removed first, so a client
 * can never choose the value. (A `-c name=value` in the client's `options` cannot win either:
 * PostgreSQL applies explicit startup parameters after `options`, and CockroachDB ignores
 * `crdb:remote_addr` in `options`.)
 */
export function remoteAddr(opts: RemoteAddrOptions = {}): Middleware {
  const param = opts.param ?? DEFAULT_REMOTE_ADDR_PARAM;
  const problem = checkRemoteAddrParam(param);
  if (problem) throw new Error(`remote-addr: option "param" ${problem}`);
  const lower = param.toLowerCase();
  return {
    name: 'remote-addr',
    beforeBackendStartup(startup: BackendStartup): void {
      for (const key of [...startup.params.keys()]) {
        if (key.toLowerCase() === lower) startup.params.delete(key);
      }
      const { address, port } = startup.ctx.client;
      if (!address) {
        // A socket that closed early has no address; CockroachDB would refuse a made-up one.
        startup.ctx.log.warn('remote-addr: client address unknown, parameter not set', { param });
        return;
      }
      startup.params.set(param, formatHostPort(address, port));
    },
  };
}

/** `host:port`, with IPv6 hosts in brackets (`[::1]:5432`), IPv4-mapped IPv6 as IPv4, no zone id. */
export function formatHostPort(address: string, port: number): string {
  let host = address;
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  const zone = host.indexOf('%');
  if (zone >= 0) host = host.slice(0, zone);
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(host);
  if (mapped) host = mapped[1]!;
  return hostPort(host, port);
}
