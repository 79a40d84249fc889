import type { Duplex } from 'node:stream';
import { Subject } from 'rxjs';
import { NativeRelay, type NativeRelayEnd } from './native-relay.js';
import type { SessionStateTracker } from './session.js';

/** How an observer takes statement timings from the native relay. */
export interface StatementTimings {
  statement(seconds: number, ok: boolean): void;
  /** Registers `drain`, to be called before the timings are read (e.g. at a scrape); returns its removal. */
  pull(drain: () => void): () => void;
  /** The session moves to the JavaScript relay: these statements (ages in seconds, oldest first) are still running. */
  adopt(inFlightAges: readonly number[]): void;
}

const NOTHING = (): void => {};

export interface NativePhaseOptions {
  client: Duplex;
  backend: Duplex;
  limits: { client: number; backend: number };
  state: SessionStateTracker;
  timings?: StatementTimings;
  parameterStatus(body: Buffer): void;
  /** Stopped at a message boundary both ways: run `waiting` (in order), then relay in JavaScript. */
  stopped(end: NativeRelayEnd, waiting: (() => void)[]): void;
  /** A side ended or failed (EOF, I/O error, a bad length), or the client's Terminate was held: the session ends. */
  ended(end: NativeRelayEnd): void;
  /** Hold the client's Terminate back from the backend (see `NativeRelayEvents.holdTerminate`). */
  holdTerminate?: boolean;
}

/**
 * The stretch of a session that the native relay carries, from the start of the relay until
 * something needs the JavaScript relay (or the session ends). While it lasts, the session's state
 * and byte counts are read from the native relay; when it stops they become the JavaScript
 * relay's, and `takeover` completes.
 */
export class NativePhase {
  /** Completes (without emitting) when the JavaScript relay is to read the sockets. */
  readonly takeover = new Subject<never>();
  private relay: NativeRelay | undefined;
  private waiting: (() => void)[] = [];
  private stopping = false;
  private stopPulling = () => {};
  private finalToClient = 0;
  private finalToBackend = 0;

  private constructor(private readonly opts: NativePhaseOptions) {}

  /** Starts the native relay on the session's sockets, or returns undefined when it cannot carry them. */
  static start(opts: NativePhaseOptions): NativePhase | undefined {
    const phase = new NativePhase(opts);
    const relay = NativeRelay.start(opts.client, opts.backend, opts.limits, {
      parameterStatus: opts.parameterStatus,
      end: (end) => phase.onEnd(end),
      statement: opts.timings?.statement,
      holdTerminate: opts.holdTerminate,
    });
    if (!relay) return undefined;
    phase.relay = relay;
    opts.state.attach({ read: () => relay.status(), wantIdle: () => phase.whenJs(() => {}) });
    if (opts.timings) phase.stopPulling = opts.timings.pull(() => relay.drainTimings());
    return phase;
  }

  /** The native relay still carries the session. */
  get active(): boolean {
    return this.relay !== undefined;
  }

  get bytesToClient(): number {
    return this.relay ? this.relay.bytesToClient : this.finalToClient;
  }

  get bytesToBackend(): number {
    return this.relay ? this.relay.bytesToBackend : this.finalToBackend;
  }

  /** Runs `fn` now when the JavaScript relay has the session, else once the native relay has stopped for it. */
  whenJs(fn: () => void): void {
    const relay = this.relay;
    if (relay === undefined) return fn();
    this.waiting.push(fn);
    if (this.stopping) return;
    this.stopping = true;
    const end = relay.stop();
    if (end) this.onEnd(end);
  }

  /** Stops now, wherever each direction is: for a close that can wait no longer. */
  abort(): NativeRelayEnd | undefined {
    const end = this.relay?.abort();
    if (end) this.takeBack(end);
    this.waiting = [];
    return end;
  }

  private onEnd(end: NativeRelayEnd): void {
    this.takeBack(end);
    const waiting = this.waiting;
    this.waiting = [];
    if (end.reason !== 'stopped') return this.opts.ended(end);
    this.opts.timings?.adopt(end.inFlight);
    this.opts.stopped(end, waiting);
    this.takeover.complete();
  }

  private takeBack(end: NativeRelayEnd): void {
    this.relay = undefined;
    this.stopPulling();
    // Its closure holds the relay, which must be freed with the session's last reference to it.
    this.stopPulling = NOTHING;
    this.finalToClient = end.bytesToClient;
    this.finalToBackend = end.bytesToBackend;
    this.opts.state.detach();
  }
}
