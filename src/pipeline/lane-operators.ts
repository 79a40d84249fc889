import { Observable, type OperatorFunction, type Subject } from 'rxjs';
import type { Message } from '../protocol/index.js';
import { Feed } from './feed.js';

// The RxJS pieces a chain's lanes are built of (see Lane in chain.ts).

/** Whether what comes out of an operator goes on: not while an observed message passes (injections aside), never an observed message. */
export function written(drop: DropState, m: Message): boolean {
  return drop.injecting > 0 || (drop.observing === 0 && !isObserved(m));
}

/** A message the chain was shown only to observe (marked by the chain; already forwarded). */
function isObserved(m: Message): boolean {
  return (m as { observed?: boolean }).observed === true;
}

/** Whether an observed message is passing the chain, and whether a middleware is injecting meanwhile. */
export interface DropState {
  observing: number;
  injecting: number;
}

/**
 * An operator that sees only the types in `codes`: every other message goes straight to its
 * output, in its place (an operator that holds a message back can be overtaken by one passed by).
 * What it emits for an observed message stays here (see `written`); `register` gets its input.
 */
export function declaredOnly<M extends Message>(op: OperatorFunction<M, M>, codes: Uint8Array, drop: DropState, register: (seen: Feed<M>) => void): OperatorFunction<M, M> {
  return (source$) =>
    new Observable<M>((subscriber) => {
      const seen = new Feed<M>();
      register(seen);
      subscriber.add(
        op(seen).subscribe({
          next: (m) => (written(drop, m) ? subscriber.next(m) : undefined),
          error: (err) => subscriber.error(err),
          complete: () => subscriber.complete(),
        }),
      );
      subscriber.add(
        source$.subscribe({
          next: (m) => (codes[m.code] === 1 ? seen.next(m) : subscriber.next(m)),
          error: (err) => seen.error(err),
          complete: () => seen.complete(),
        }),
      );
    });
}

/**
 * A stage's output with messages its middleware injected; the injections end when the stage's
 * input does (so a completed or failed stream completes or fails the output).
 */
export function withInjections<M>(stage$: Observable<M>, injected: readonly Subject<M>[]): Observable<M> {
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

/** Marks an operator made by {@link observer}: its function, which the chain calls itself for an observed message. */
const SEES = Symbol('sees');

/**
 * `tap(see)` for a middleware that only looks: every message goes to `see` and on unchanged,
 * except an observed one, which stops here (the chain drops what comes out for one anyway). For
 * an observed message the chain calls `see` itself, not through RxJS: one call, not five, for
 * each message of each statement (query-log). An error `see` throws fails the stream, as in tap.
 */
export function observer<M extends Message>(see: (m: M) => void): OperatorFunction<M, M> {
  const op = (source: Observable<M>) =>
    new Observable<M>((subscriber) =>
      source.subscribe({
        next: (m) => {
          try {
            see(m);
          } catch (err) {
            subscriber.error(err);
            return;
          }
          if (!isObserved(m)) subscriber.next(m);
        },
        error: (err) => subscriber.error(err),
        complete: () => subscriber.complete(),
      }),
    );
  return observing(op, see);
}

/**
 * `op` marked as an observer whose function for observed messages is `see` (see {@link observer}):
 * for a wrapper around an observer's operator that must keep the chain's direct call.
 */
export function observing<M>(op: OperatorFunction<M, M>, see: (m: M) => void): OperatorFunction<M, M> {
  return Object.assign(op, { [SEES]: see });
}

/** The function of an operator made by {@link observer}; undefined for any other. */
export function seenBy<M>(op: OperatorFunction<M, M>): ((m: M) => void) | undefined {
  return (op as { [SEES]?: (m: M) => void })[SEES];
}
