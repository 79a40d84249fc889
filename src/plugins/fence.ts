import { catchError, throwError, type OperatorFunction } from 'rxjs';
import { observing, seenBy } from '../pipeline/lane-operators.js';
import type { Middleware, SessionHandlers } from '../pipeline/middleware.js';
import { PgError, SqlState } from '../protocol/index.js';
import type { MiddlewareFactory } from './api.js';

/** Told about every error a plugin raises at run time (for logs and metrics). */
export type PluginErrorReporter = (plugin: string, where: string, error: unknown) => void;

/**
 * A plugin's middleware, fenced: an error it raises (in setup of a session or inside its streams)
 * is reported with the plugin's name and ends only that session, with an ErrorResponse.
 */
export function fenceMiddleware(factory: MiddlewareFactory, plugin: string, report: PluginErrorReporter): MiddlewareFactory {
  return (options) => {
    const mw = factory(options);
    // The plugin's own PgError is kept; anything else it throws becomes XX000 naming it.
    const blame = (where: string, err: unknown): PgError => {
      report(plugin, where, err);
      return err instanceof PgError ? err : new PgError('FATAL', SqlState.InternalError, `plugin "${plugin}" failed`, { cause: err });
    };
    const fence = (where: string) => (err: unknown) =>
      throwError(() => (err instanceof PassingThrough ? err.error : blame(where, err)));
    const fenced = <M>(op: OperatorFunction<M, M>, where: string): OperatorFunction<M, M> => {
      const streamed: OperatorFunction<M, M> = (s) => op(s.pipe(catchError(passThrough))).pipe(catchError(fence(where)));
      const see = seenBy(op);
      if (!see) return streamed;
      // An observer (see `observer`) keeps the chain's direct call for observed messages, which
      // does not pass the stream's fence: what it throws is blamed here, then fails its stream.
      return observing(streamed, (m: M) => {
        try {
          see(m);
        } catch (err) {
          throw blame(where, err);
        }
      });
    };
    // Spread first: whatever else a middleware declares reaches the pipeline as it is.
    const wrapped: Middleware = {
      ...mw,
      name: mw.name,
      beforeBackendStartup: mw.beforeBackendStartup
        ? async (startup) => {
            try {
              await mw.beforeBackendStartup!(startup);
            } catch (err) {
              throw blame('beforeBackendStartup', err);
            }
          }
        : undefined,
      session: mw.session
        ? (ctx) => {
            let h: SessionHandlers | void;
            try {
              h = mw.session!(ctx);
            } catch (err) {
              throw blame('session', err);
            }
            if (!h) return h;
            const { frontend, backend } = h;
            return {
              ...h,
              frontend: frontend && fenced(frontend, 'frontend'),
              backend: backend && fenced(backend, 'backend'),
            };
          }
        : undefined,
    };
    return wrapped;
  };
}

/** An error from upstream of a plugin's operator, carried through it without blaming the plugin. */
class PassingThrough extends Error {
  constructor(readonly error: unknown) {
    super('upstream error passing through a plugin', { cause: error });
  }
}
const passThrough = (error: unknown) => throwError(() => new PassingThrough(error));

