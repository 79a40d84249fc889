import type { Middleware } from '../pipeline/index.js';
import type { RelayObserver } from '../pipeline/relay.js';
import type { Session } from '../pipeline/session.js';
import type { AuthProvider } from '../auth/provider.js';
import type { BackendPool } from '../backend/pool.js';
import type { CancelRegistry } from '../backend/cancel.js';
import type { Logger } from '../telemetry/log.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { NegotiateOptions } from './negotiate.js';
import type { ExpiryPolicy } from './token-expiry.js';
import type { AuthThrottle } from './throttle.js';
import type { ClientAuthDeps } from './client-auth-phase.js';
import type { AdminHook } from './admin-session.js';

export interface ConnectionDeps extends NegotiateOptions, ClientAuthDeps {
  auth: AuthProvider;
  middleware: readonly Middleware[];
  cancels: CancelRegistry;
  log: Logger;
  /** Log "session started" (default true; `--logConnections`). */
  logConnections?: boolean;
  /** Log "session ended" for sessions the client ended cleanly (default true; `--logDisconnections`); others are logged always. */
  logDisconnections?: boolean;
  /** Refuse clients that did not use TLS (when TLS is configured and --insecure is not set). */
  requireTls: boolean;
  authTimeoutMs: number;
  /** What to do when the client's credential expires during the session. */
  expiry?: ExpiryPolicy;
  /** Startup parameters a client may not set (the proxy owns them). */
  reservedParams: ReadonlySet<string>;
  allowReplication: boolean;
  /** Read an HAProxy PROXY header first and take the client address from it. */
  proxyProtocol?: boolean;
  /** Told the client address a PROXY header gave; false: the connection was refused and is closing. */
  clientAddressKnown?(address: string): boolean;
  throttle?: AuthThrottle;
  /** Sessions per user (identity), with the limit; shared by all connections. */
  userLimit?: { max: number; counts: Map<string, number> };
  metrics?: Metrics;
  /** Most bytes the JavaScript relay holds whole for one message (`RelayOptions.maxMessageSize`). */
  maxMessageSize?: number;
  /** Let sessions whose pipeline looks at no message run on the native relay (see `RelayOptions.native`). */
  nativeRelay?: boolean;
  /** Always-on accounting of each session's statements (metrics, spans), outside the chain. */
  observeStatements?(session: Session): RelayObserver;
  onSessionStart?(session: Session): void;
  /** The client authenticated and its backend is connected; the relay starts next. */
  onAuthenticated?(session: Session): void;
  onSessionEnd?(session: Session): void;
  /** The operator's console (SPEC §10). */
  admin?: AdminHook;
  /** Logged-in backend connections kept between sessions (SPEC §8); absent: one per session. */
  pool?: BackendPool;
}

