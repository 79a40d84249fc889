import { Observable, Subject } from 'rxjs';
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

  // A stage with no operator for a direction passes messages through untouched, so its
  // injections enter at the same point as those of the stage before it: stages share one merge
  // point, and a message crosses one hop per operator plus one per merge point, not two per stage.
  const toBackend$ = compose(fromClient$, handlers.map((h, i) => ({ op: h.frontend, injections: toBackendInjections[i]! })));
  const toClient$ = compose(
    fromBackend$,
    handlers.map((h, i) => ({ op: h.backend, injections: toClientInjections[i]! })).reverse(),
  );
  return { toBackend$, toClient$, handlers };
}

type Stage<M> = { op?: (source: Observable<M>) => Observable<M>; injections: Subject<M> };

function compose<M>(source$: Observable<M>, stages: readonly Stage<M>[]): Observable<M> {
  let out = source$;
  let waiting: Subject<M>[] = [];
  for (const { op, injections } of stages) {
    if (op) {
      if (waiting.length > 0) out = withInjections(out, waiting);
      waiting = [];
      out = out.pipe(op);
    }
    waiting.push(injections);
  }
  return waiting.length > 0 ? withInjections(out, waiting) : out;
}

/**
 * A stage's output with messages its middleware injected; the injections end when the stage's
 * input does (so a completed or failed stream completes or fails the output).
 */
function withInjections<M>(stage$: Observable<M>, injected: readonly Subject<M>[]): Observable<M> {
  return new Observable<M>((subscriber) => {
    for (const s of injected) subscriber.add(s.subscribe({ next: (m) => subscriber.next(m) }));
    subscriber.add(() => {
      for (const s of injected) s.complete();
    });
    // Handing the subscriber itself to the stage (rather than an observer that forwards to it)
    // spares every relayed message one layer of calls: RxJS uses a Subscriber as it is.
    stage$.subscribe(subscriber);
  });
}
