/**
 * The login's abort (`--authTimeout`), with its AbortSignal made only when something listens: a
 * login that gets a pooled connection never dials or waits, and an AbortController (an
 * EventTarget) per connection is a measurable part of a cheap login.
 */
export class LoginAbort {
  private controller: AbortController | undefined;
  private abortedAlready = false;

  get aborted(): boolean {
    return this.abortedAlready;
  }

  /** A signal that aborts with this login (already aborted when asked for after the fact). */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.abortedAlready) this.controller.abort();
    }
    return this.controller.signal;
  }

  abort(): void {
    this.abortedAlready = true;
    this.controller?.abort();
  }
}
