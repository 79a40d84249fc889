import type { PgError } from '../protocol/index.js';
import { OAuthRefusal } from '../auth/oauth-bearer.js';
import type { Endpoint } from '../pipeline/middleware.js';
import type { Logger } from '../telemetry/log.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { SessionSpan } from '../telemetry/spans.js';
import { clientGone } from './refusal.js';
import type { AuthThrottle } from './throttle.js';

export interface AuthOutcomeDeps {
  metrics?: Metrics;
  throttle?: AuthThrottle;
}

/**
 * Accounts for one login's authentication, once: metrics, the auth span, throttling and the log.
 * A client that went away, or an OAuth discovery request, is not a failed login.
 */
export class AuthOutcome {
  private readonly span: ReturnType<SessionSpan['auth']>;

  constructor(
    private readonly provider: string,
    private readonly client: Endpoint,
    private readonly deps: AuthOutcomeDeps,
    private readonly log: Logger,
    sessionSpan: SessionSpan,
  ) {
    this.span = sessionSpan.auth(provider);
  }

  succeeded(): void {
    this.deps.throttle?.success(this.client.address);
    this.deps.metrics?.authAttempt(this.provider, 'success');
    this.span.end({ result: 'success' });
  }

  failed(e: PgError, reason = e instanceof OAuthRefusal ? (e.detail ?? e.message) : e.message): void {
    const { metrics, throttle } = this.deps;
    if (clientGone(e)) {
      // E.g. psql's first, password-less try: asked for a password, it closes and asks the user.
      metrics?.authAttempt(this.provider, 'abandoned', 'client_gone');
      this.span.end({ result: 'abandoned', reason: 'client_gone' });
      this.log.info('client closed the connection during authentication', { provider: this.provider });
      return;
    }
    // An OAuth discovery request is the first half of a token login, not a failed one.
    if (e instanceof OAuthRefusal && e.discovery) {
      metrics?.authAttempt(this.provider, 'discovery', 'oauth_discovery');
      this.span.end({ result: 'discovery', reason: 'oauth_discovery' });
      this.log.info('OAuth discovery answered', { provider: this.provider });
      return;
    }
    // Credentials refused count toward throttling; an unreachable backend or a timeout does not.
    const refused = e.sqlstate.startsWith('28');
    if (refused) throttle?.failure(this.client.address);
    metrics?.authAttempt(this.provider, refused ? 'failure' : 'error', reason);
    this.span.end({ result: refused ? 'failure' : 'error', reason });
    this.log.info('authentication failed', { provider: this.provider, sqlstate: e.sqlstate, reason: e.message, detail: e.detail });
  }
}
