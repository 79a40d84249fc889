import { Observable, type Subscriber } from 'rxjs';

/**
 * A hot source for the chain's lanes: what a `Subject` does for them (many subscribers, late
 * subscribers told of the end), without what costs on every message — `Subject.next` wraps each
 * call in a fresh closure (`errorContext`) and walks a copy of its observers. Every message of a
 * session passes one or two of these, an observed one for each operator that declared its type.
 */
export class Feed<M> extends Observable<M> {
  private subscribers: Subscriber<M>[] = [];
  private ended: { error: unknown } | 'complete' | undefined;

  constructor() {
    super((subscriber) => {
      if (this.ended === 'complete') return subscriber.complete();
      if (this.ended) return subscriber.error(this.ended.error);
      // Copied on change, never in place: a `next` walking the list is not disturbed.
      this.subscribers = [...this.subscribers, subscriber];
      return () => {
        this.subscribers = this.subscribers.filter((s) => s !== subscriber);
      };
    });
  }

  next(m: M): void {
    const subscribers = this.subscribers;
    for (let i = 0; i < subscribers.length; i++) subscribers[i]!.next(m);
  }

  error(err: unknown): void {
    if (this.ended) return;
    this.ended = { error: err };
    const subscribers = this.subscribers;
    this.subscribers = [];
    for (const s of subscribers) s.error(err);
  }

  complete(): void {
    if (this.ended) return;
    this.ended = 'complete';
    const subscribers = this.subscribers;
    this.subscribers = [];
    for (const s of subscribers) s.complete();
  }
}
