import type { Observable } from 'rxjs';
import type { Middleware } from '../pipeline/middleware.js';
import { PgError, SqlState } from '../protocol/index.js';

/**
 * Graceful drain: once `draining$` emits true, every session is closed with FATAL 57P01 at its
 * first idle point (ReadyForQuery status I and nothing unanswered), so a transaction or a
 * pipelined batch in flight finishes first. What is still open at the grace period is closed by
 * the process.
 */
export function drainGate(draining$: Observable<boolean>, closed?: (sessionId: string) => void): Middleware {
  return {
    name: 'drain-gate',
    session(ctx) {
      const sub = draining$.subscribe((draining) => {
        if (!draining) return;
        ctx.state.whenIdle(() => {
          ctx.log.info('closing idle session for shutdown');
          ctx.close(new PgError('FATAL', SqlState.AdminShutdown, 'terminating connection due to administrator command'));
          closed?.(ctx.id);
        });
      });
      return { onClose: () => sub.unsubscribe() };
    },
  };
}
