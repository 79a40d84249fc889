import { merge, Observable, Subject, tap } from 'rxjs';
import type { BackendMessage, FrontendMessage } from '../protocol/index.js';
import type { Middleware, MiddlewareContext, SessionContext, SessionHandlers } from './middleware.js';

export interface Chain {
  /** Client messages after every middleware, ready for the backend socket. */
  readonly toBackend$: Observable<FrontendMessage>;
  /** Backend messages after every middleware, ready for the client socket. */
  readonly toClient$: Observable<BackendMessage>;
  readonly handlers: readonly SessionHandlers[];
}

/**
 * Composes the configured middleware into two streams: frontend messages pass them first to last,
 * backend messages last to first. Each middleware's injections enter right after it in the
 * direction they travel. With no middleware the sources come out untouched.
 */
export function buildChain(
  middleware: readonly Middleware[],
  ctx: SessionContext,
  fromClient$: Observable<FrontendMessage>,
  fromBackend$: Observable<BackendMessage>,
): Chain {
  const toBackendInjections: Subject<FrontendMessage>[] = [];
  const toClientInjections: Subject<BackendMessage>[] = [];
  const handlers: SessionHandlers[] = [];

  for (const mw of middleware) {
    const toBackend = new Subject<FrontendMessage>();
    const toClient = new Subject<BackendMessage>();
    const mwCtx: MiddlewareContext = Object.assign(Object.create(ctx) as SessionContext, {
      sendToClient: (...msgs: BackendMessage[]) => msgs.forEach((m) => toClient.next(m)),
      sendToBackend: (...msgs: FrontendMessage[]) => msgs.forEach((m) => toBackend.next(m)),
    });
    try {
      handlers.push(mw.session?.(mwCtx) ?? {});
    } catch (err) {
      // Middleware already set up for this session still get their onClose.
      for (const h of handlers) h.onClose?.();
      throw err;
    }
    toBackendInjections.push(toBackend);
    toClientInjections.push(toClient);
  }

  let front = fromClient$;
  for (let i = 0; i < handlers.length; i++) {
    const out = handlers[i]!.frontend ? front.pipe(handlers[i]!.frontend!) : front;
    front = withInjections(out, toBackendInjections[i]!);
  }
  let back = fromBackend$;
  for (let i = handlers.length - 1; i >= 0; i--) {
    const out = handlers[i]!.backend ? back.pipe(handlers[i]!.backend!) : back;
    back = withInjections(out, toClientInjections[i]!);
  }
  return { toBackend$: front, toClient$: back, handlers };
}

/** Merges a stage's output with its injections; the injections end when the stage's input does. */
function withInjections<M>(stage$: Observable<M>, injected: Subject<M>): Observable<M> {
  const closeInjections = () => injected.complete();
  return merge(stage$.pipe(tap({ complete: closeInjections, error: closeInjections })), injected);
}
