/** The settings of `pgward start` (SPEC §2), with pg-auth-proxy's camelCase names. */
export type FlagType = 'string' | 'boolean' | 'duration' | 'integer' | 'list';

export interface FlagSpec {
  name: string;
  type: FlagType;
  default?: string | boolean | number | string[];
  help: string;
  /** Value shown in help, e.g. FILE. */
  arg?: string;
}

export const START_FLAGS: readonly FlagSpec[] = [
  { name: 'config', type: 'string', arg: 'FILE', help: 'YAML or JSON file with any of these settings plus pipeline and plugins' },
  { name: 'bindAddr', type: 'string', default: '127.0.0.1:13013', arg: 'HOST:PORT', help: 'address to listen on' },
  { name: 'bindCert', type: 'string', arg: 'FILE', help: 'PEM certificate chain presented to clients' },
  { name: 'bindKey', type: 'string', arg: 'FILE', help: 'PEM private key for --bindCert' },
  { name: 'nativeRelay', type: 'boolean', default: true, help: 'carry sessions on the native carrier when it is built, whatever their pipeline, and keep pooled plain backend connections on native endpoints (--no-nativeRelay: every session on the JavaScript carrier)' },
  { name: 'nativeTls', type: 'boolean', default: true, help: "run TLS (to clients and to backends) in the native addon with Node's own OpenSSL, so the native carrier carries TLS sessions too, when it is built (--no-nativeTls: Node's TLS sockets, carried in JavaScript)" },
  { name: 'insecure', type: 'boolean', default: false, help: 'allow running without TLS (passwords and tokens cross the network in the clear)' },
  { name: 'auth', type: 'string', default: 'jwt', arg: 'PROVIDER', help: 'auth provider: jwt, command, passthrough, or one a plugin registers' },
  { name: 'backends', type: 'string', arg: 'FILE', help: 'jwt: JSON/YAML file mapping claim values to backend URLs' },
  { name: 'jwtField', type: 'string', default: 'sub', arg: 'CLAIM', help: 'jwt: the claim whose value selects the backend' },
  { name: 'signingKeys', type: 'list', arg: 'SOURCES', help: 'jwt: PEM public keys or certificates, JWKS files or https URLs (repeatable, comma-separated)' },
  { name: 'oidcDiscovery', type: 'string', arg: 'URL', help: "jwt: OIDC discovery document whose jwks_uri supplies keys" },
  { name: 'jwksCooldown', type: 'duration', default: '30s', help: 'jwt: refetch remote JWKS on an unknown kid at most this often' },
  { name: 'issuer', type: 'string', arg: 'ISS', help: 'jwt: required iss claim' },
  { name: 'audience', type: 'string', arg: 'AUD', help: 'jwt: required aud claim' },
  { name: 'algorithms', type: 'list', default: 'EdDSA,ES256,ES384,RS256,PS256', arg: 'ALGS', help: 'jwt: accepted JWS algorithms (none and HMAC are never accepted)' },
  { name: 'clockTolerance', type: 'duration', default: '30s', help: 'jwt: leeway for exp, nbf and iat' },
  { name: 'requireExp', type: 'boolean', default: true, help: 'jwt: refuse tokens without exp' },
  { name: 'requireUserMatch', type: 'boolean', default: true, help: 'jwt: the startup user must equal the selecting claim (or the mapped backend user)' },
  { name: 'sessionExpiry', type: 'string', default: 'close', arg: 'close|ignore', help: "what happens when a session's token expires: close it at its next idle point, or ignore" },
  { name: 'expiryWarning', type: 'duration', default: '1m', help: 'warn the client with a NoticeResponse this long before its token expires (0: never)' },
  { name: 'revocations', type: 'string', arg: 'FILE', help: 'YAML/JSON list of revoked token subjects and ids ({ sub | jti, until?, reason? }); read at start, on SIGHUP and --refresh, written back by REVOKE/UNREVOKE' },
  { name: 'refresh', type: 'duration', default: '24h', help: 'reload keys, backends and certificates this often (0: never; SIGHUP reloads now)' },
  { name: 'backend', type: 'string', arg: 'URL', help: 'passthrough: the one backend, as a postgres:// URL' },
  { name: 'credsCmd', type: 'string', arg: 'COMMAND', help: 'passthrough: command whose output is the backend password (run without a shell)' },
  { name: 'credsTtl', type: 'duration', default: '10m', help: 'passthrough: how long the credsCmd output is reused' },
  { name: 'credsOverride', type: 'boolean', default: true, help: "passthrough: replace the client's password with credsCmd's output (or the URL's password)" },
  { name: 'ignoreUsername', type: 'boolean', default: false, help: "passthrough: log in as the URL's user whatever user the client names" },
  { name: 'allowNonLoopback', type: 'boolean', default: false, help: 'passthrough: allow a non-loopback listen address (no client password is checked in this mode)' },
  { name: 'authCmd', type: 'string', arg: 'COMMAND', help: 'command: the external authenticator (pgAuthProxy protocol), run without a shell; config auth.cmd takes an argv list' },
  { name: 'clearPasswd', type: 'boolean', default: false, help: 'command: ask clients for a cleartext password instead of an md5 response' },
  { name: 'authCmdBackendParams', type: 'string', arg: 'QUERY', help: 'command: libpq URL parameters for the backends the authenticator names, e.g. "sslmode=verify-full&sslrootcert=/etc/pgward/ca.pem" (default sslmode=prefer)' },
  { name: 'reportRemoteAddr', type: 'boolean', default: false, help: 'inject the client address as the crdb:remote_addr startup parameter (adds remote-addr to the pipeline)' },
  { name: 'metricsAddr', type: 'string', arg: 'HOST:PORT', help: 'serve /metrics, /vars, /health and /ready over HTTP here' },
  { name: 'proxyProtocol', type: 'boolean', default: false, help: 'require an HAProxy PROXY protocol v1/v2 header on every connection and use the address it carries' },
  { name: 'throttleAfter', type: 'integer', default: 10, help: 'after this many consecutive failed logins from one address, delay its attempts (1 s doubling, refused past 60 s); 0 disables' },
  { name: 'maxConnectionsPerUser', type: 'integer', default: 0, help: 'most sessions one user (token subject or user name) may hold; 0 = no limit' },
  { name: 'authTimeout', type: 'duration', default: '15s', help: 'startup and authentication must finish within this time' },
  { name: 'maxConnections', type: 'integer', default: 1000, help: 'over this, new clients get 53300 too_many_connections' },
  { name: 'maxPendingLogins', type: 'integer', default: 100, help: 'most connections still logging in (startup, authentication, backend login) at once, apart from --maxConnections; over it new clients get 53300' },
  { name: 'maxPendingLoginsPerAddress', type: 'integer', default: 20, help: 'most connections still logging in from one client address (the PROXY header address with --proxyProtocol); 0 = no per-address limit' },
  { name: 'maxMessageSize', type: 'integer', default: 67108864, arg: 'BYTES', help: 'JavaScript relay: most bytes a message may declare when held whole (large CopyData and DataRow stream through unless a middleware reads them); over it the session ends with 54000' },
  { name: 'poolMode', type: 'string', arg: 'session|off', help: 'backend connection reuse: session (keep logged-in backend connections per target and hand them to the next session; default) or off (a new backend connection per session); config pool.mode' },
  { name: 'poolMaxSize', type: 'integer', arg: 'N', help: 'most backend connections per target, in use and idle (default 100); a session beyond it waits --poolWaitTimeout, then gets 53300' },
  { name: 'poolWaitTimeout', type: 'duration', help: 'how long a session waits for a connection of a full target (default 5s)' },
  { name: 'poolMaxIdle', type: 'integer', arg: 'N', help: 'most idle backend connections kept per target (default 16)' },
  { name: 'poolIdleTimeout', type: 'duration', help: 'close an idle backend connection unused this long (default 10m)' },
  { name: 'poolMaxLifetime', type: 'duration', help: 'close a backend connection older than this instead of reusing it (default 1h)' },
  { name: 'poolReset', type: 'string', arg: 'SQL', help: 'statement run before a backend connection serves another session (default DISCARD ALL)' },
  { name: 'poolWarm', type: 'integer', arg: 'N', help: 'idle backend connections opened at start and after a reload for each target that is not a template (default 0)' },
  { name: 'gracePeriod', type: 'duration', default: '30s', help: 'on SIGTERM/SIGINT, how long to wait for sessions to become idle' },
  { name: 'logDestination', type: 'string', arg: 'FILE', help: 'write logs to this file instead of stdout' },
  { name: 'logFormat', type: 'string', default: 'text', arg: 'FORMAT', help: 'text, json or fluent' },
  { name: 'logConnections', type: 'boolean', default: true, help: 'log a "session started" line for each session (--no-logConnections: not; refused and failed logins are logged either way)' },
  { name: 'logDisconnections', type: 'boolean', default: true, help: 'log a "session ended" line for each session (--no-logDisconnections: only for sessions that end with an error or are closed by pgward or the backend)' },
];

export function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}

export function envName(name: string): string {
  return 'PGWARD_' + name.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase();
}
