import { Observable, Subject, type OperatorFunction, type Subscription } from 'rxjs';
import {
  BackendSpecs,
  FrontendSpecs,
  LazyMessage,
  type BackendMessage,
  type FrontendMessage,
  type Message,
} from '../protocol/index.js';
import type { Middleware, SessionContext, SessionHandlers } from './middleware.js';
import { countedTypes, MessageCounts } from './counts.js';
import { Feed } from './feed.js';
import { declaredOnly, seenBy, withInjections, written, type DropState } from './lane-operators.js';
import { codesOf, MessageWants, sharedWants } from './wants.js';
import { StageContext } from './stage-context.js';

/** Where the chain's output goes: the carrier's writes, and the end of the session on a failure. */
export interface ChainOutputs {
  toBackend(m: FrontendMessage): void;
  toClient(m: BackendMessage): void;
  /** A middleware's operator failed (in the direction named): the session ends with it. */
  error(err: unknown, direction: Direction): void;
}

export type Direction = 'toBackend' | 'toClient';

export interface Chain {
  /** A client message (one the session wants, see `wants`) into the first middleware. */
  fromClient(m: FrontendMessage): void;
  /** A backend message into the last middleware. */
  fromBackend(m: BackendMessage): void;
  /**
   * A client message of a type only observed (see `MessageInterest.observeOnly`), already
   * forwarded: it passes the operators, and what they emit while handling it is not written
   * (injections aside).
   */
  observeClient(m: FrontendMessage): void;
  /** A backend message only observed, already forwarded. */
  observeBackend(m: BackendMessage): void;
  /** `n` (default 1) client messages of a type only counted (see `MessageInterest.count`), already forwarded: only their count goes on. */
  countClient(code: number, n?: number): void;
  /** Backend messages only counted, already forwarded. */
  countBackend(code: number, n?: number): void;
  readonly handlers: readonly SessionHandlers[];
  /** What the session's operators must see; a carrier forwards everything else itself. Shared: add to a copy. */
  readonly wants: MessageWants;
  /** The source of a direction failed: the failure passes the operators on its way out. */
  fail(direction: Direction, err: unknown): void;
  /** The session ended: the streams stop, injections go nowhere. */
  close(): void;
}

/**
 * Composes the configured middleware into two streams: frontend messages pass them first to last,
 * backend messages last to first. Each middleware's injections enter right after it in the
 * direction they travel. An operator sees only the message types its middleware declared
 * (`Middleware.messages`); others pass it by. A direction where no middleware has an operator
 * is no stream at all: messages and injections go straight to the output.
 */
export function composeChain(middleware: readonly Middleware[], session: SessionContext, outputs: ChainOutputs): Chain {
  // While an observed message passes, what comes out is dropped, unless a middleware injects it;
  // so is an observed message itself that an operator lets go later.
  const drop: DropState = { observing: 0, injecting: 0 };
  const toBackend = new Lane<FrontendMessage>(outputs, 'toBackend', drop);
  const toClient = new Lane<BackendMessage>(outputs, 'toClient', drop);
  const counts = countsOf(middleware);
  const handlers: SessionHandlers[] = [];
  const contexts: StageContext[] = [];
  let operators = false;
  for (const mw of middleware) {
    const ctx = new StageContext(session, toClient.direct, toBackend.direct, drop, counts);
    let h: SessionHandlers;
    try {
      h = mw.session?.(ctx) ?? NO_HANDLERS;
    } catch (err) {
      // Middleware already set up for this session still get their onClose.
      for (const h of handlers) h.onClose?.();
      throw err;
    }
    handlers.push(h);
    contexts.push(ctx);
    operators ||= h.frontend !== undefined || h.backend !== undefined;
  }
  // No operator in either direction (drain-gate, the default pipeline): no stages, no streams.
  if (!operators) return new ComposedChain(toBackend, toClient, drop, counts, handlers, wantsOfCounts(middleware, counts));
  const { wants, frontendStages, backendStages } = stagesOf(middleware, handlers, contexts);
  toBackend.build(frontendStages);
  toClient.build(backendStages.reverse());
  return new ComposedChain(toBackend, toClient, drop, counts, handlers, wants);
}

/** What a composed chain is, as one object: its inputs count first where a middleware counts, then enter their lane. */
class ComposedChain implements Chain {
  constructor(
    private readonly toBackend: Lane<FrontendMessage>,
    private readonly toClient: Lane<BackendMessage>,
    private readonly drop: DropState,
    private readonly counts: MessageCounts | undefined,
    readonly handlers: readonly SessionHandlers[],
    readonly wants: MessageWants,
  ) {}

  fromClient(m: FrontendMessage): void {
    this.counts?.fromClient(m.code);
    this.toBackend.input(m);
  }
  fromBackend(m: BackendMessage): void {
    this.counts?.fromBackend(m.code);
    this.toClient.input(m);
  }
  observeClient(m: FrontendMessage): void {
    this.counts?.fromClient(m.code);
    observed(this.drop, this.toBackend, m);
  }
  observeBackend(m: BackendMessage): void {
    this.counts?.fromBackend(m.code);
    observed(this.drop, this.toClient, m);
  }
  countClient(code: number, n?: number): void {
    this.counts?.fromClient(code, n);
  }
  countBackend(code: number, n?: number): void {
    this.counts?.fromBackend(code, n);
  }
  fail(direction: Direction, err: unknown): void {
    (direction === 'toBackend' ? this.toBackend : this.toClient).fail(err);
  }
  close(): void {
    this.toBackend.close();
    this.toClient.close();
  }
}

const NO_HANDLERS: SessionHandlers = Object.freeze({});
const IGNORE = (_m: Message): void => {};
/** A lane's observers until it is built with operators (frozen: shared by every lane without). */
const NO_OBSERVERS: readonly Observer<unknown>[] = Object.freeze([]);

/**
 * Each middleware's operators, narrowed to the types it declared, and what the session must be
 * handed. A function of its own: the closures `composeChain` returns keep its scope alive for the
 * session's life, and these are needed only while the lanes are built.
 */
function stagesOf(middleware: readonly Middleware[], handlers: readonly SessionHandlers[], contexts: readonly StageContext[]) {
  const wants = new MessageWants();
  const frontendStages: Stage<FrontendMessage>[] = [];
  const backendStages: Stage<BackendMessage>[] = [];
  for (let i = 0; i < handlers.length; i++) {
    const declared = middleware[i]!.messages;
    const observe = declared?.observeOnly === true;
    const { frontend, backend } = handlers[i]!;
    // An observer that declares no list for a direction observes all of it: it is narrowed to every type.
    const all = observe ? ALL_CODES : undefined;
    if (frontend) wants.addFrontend(declared?.frontend ?? 'all', observe);
    if (backend) wants.addBackend(declared?.backend ?? 'all', observe);
    addCounts(wants, declared);
    const ctx = contexts[i]!;
    frontendStages.push({ op: frontend, codes: declared?.frontend ? codesOf(declared.frontend, FrontendSpecs) : all, ctx });
    backendStages.push({ op: backend, codes: declared?.backend ? codesOf(declared.backend, BackendSpecs) : all, ctx });
  }
  return { wants: sharedWants(wants), frontendStages, backendStages };
}

function addCounts(wants: MessageWants, declared: Middleware['messages']): void {
  if (declared?.count?.frontend) wants.countFrontend(declared.count.frontend);
  if (declared?.count?.backend) wants.countBackend(declared.count.backend);
}

/** The wants of a chain with no operator (only counted types, if any), made once per pipeline. */
const operatorlessWants = new WeakMap<readonly Middleware[], MessageWants>();

function wantsOfCounts(middleware: readonly Middleware[], counts: MessageCounts | undefined): MessageWants {
  let wants = operatorlessWants.get(middleware);
  if (wants) return wants;
  wants = new MessageWants();
  if (counts) for (const mw of middleware) addCounts(wants, mw.messages);
  wants = sharedWants(wants);
  operatorlessWants.set(middleware, wants);
  return wants;
}

/** The counts the pipeline's middleware declared (`MessageInterest.count`), or none. */
function countsOf(middleware: readonly Middleware[]): MessageCounts | undefined {
  const counted = countedTypes(middleware);
  return counted && new MessageCounts(counted);
}

/** The chain as two Observables, for code that drives it with streams of its own (tests, the plugin test kit). */
export interface ObservableChain {
  /** Client messages after every middleware, ready for the backend. */
  readonly toBackend$: Observable<FrontendMessage>;
  /** Backend messages after every middleware, ready for the client. */
  readonly toClient$: Observable<BackendMessage>;
  readonly handlers: readonly SessionHandlers[];
  readonly wants: MessageWants;
  /** An observed client message (see `MessageInterest.observeOnly`), already forwarded by the caller. */
  observeClient(m: FrontendMessage): void;
  /** An observed backend message, already forwarded by the caller. */
  observeBackend(m: BackendMessage): void;
  /** `n` (default 1) client messages of a type only counted (see `MessageInterest.count`), already forwarded by the caller. */
  countClient(code: number, n?: number): void;
  /** Backend messages only counted, already forwarded by the caller. */
  countBackend(code: number, n?: number): void;
}

/**
 * `composeChain` over streams: every message of `fromClient$` goes in (wanted or not), each output
 * completes when its source does and fails when its direction does.
 */
export function buildChain(
  middleware: readonly Middleware[],
  session: SessionContext,
  fromClient$: Observable<FrontendMessage>,
  fromBackend$: Observable<BackendMessage>,
): ObservableChain {
  const toBackend$ = new Subject<FrontendMessage>();
  const toClient$ = new Subject<BackendMessage>();
  const chain = composeChain(middleware, session, {
    toBackend: (m) => toBackend$.next(m),
    toClient: (m) => toClient$.next(m),
    error: (err, direction) => (direction === 'toBackend' ? toBackend$ : toClient$).error(err),
  });
  const wire = <M>(source$: Observable<M>, direction: Direction, into: (m: M) => void, out: Subject<M>): Observable<M> =>
    new Observable<M>((subscriber) => {
      subscriber.add(out.subscribe(subscriber));
      subscriber.add(source$.subscribe({ next: (m) => into(m), error: (err) => chain.fail(direction, err), complete: () => out.complete() }));
    });
  return {
    toBackend$: wire(fromClient$, 'toBackend', (m) => chain.fromClient(m), toBackend$),
    toClient$: wire(fromBackend$, 'toClient', (m) => chain.fromBackend(m), toClient$),
    handlers: chain.handlers,
    wants: chain.wants,
    observeClient: (m) => chain.observeClient(m),
    observeBackend: (m) => chain.observeBackend(m),
    countClient: (code, n) => chain.countClient(code, n),
    countBackend: (code, n) => chain.countBackend(code, n),
  };
}

/** A middleware's operator for one direction, and the types it sees (undefined: all, in full). */
type Stage<M> = { op?: OperatorFunction<M, M>; codes?: Uint8Array; ctx: StageContext };

const ALL_CODES = new Uint8Array(256).fill(1);

/**
 * An observed message (already forwarded) shown to the operators that declared its type; it is
 * marked, so it is never written, whenever it comes out.
 */
function observed<M extends Message>(drop: DropState, lane: Lane<M>, m: M): void {
  if (m instanceof LazyMessage) m.observed = true;
  drop.observing++;
  try {
    lane.observe(m);
  } finally {
    drop.observing--;
  }
}

/**
 * One direction of the chain. Without operators it is a plain function call to the output; with
 * some, an RxJS stream: a stage with no operator passes messages through untouched, so its
 * injections enter at the same point as those of the stage before it (stages share one merge
 * point, and a message crosses one hop per operator plus one per merge point).
 */
class Lane<M extends Message> {
  input: (m: M) => void;
  private closed = false;
  private source: Feed<M> | undefined;
  private subscription: Subscription | undefined;
  /** Each narrowed stage's input, in the order messages pass them (by stage while the lane is built). */
  private observers: Observer<M>[] = NO_OBSERVERS as Observer<M>[];

  constructor(
    private readonly outputs: ChainOutputs,
    private readonly direction: Direction,
    private readonly drop: DropState,
  ) {
    this.input = this.direct;
  }

  /**
   * An observed message, straight to each operator that declared its type, in order: what one
   * of them emits for it is not written, so the others get it as read, not through the stream.
   */
  observe(m: M): void {
    const observers = this.observers;
    for (let i = 0; i < observers.length; i++) {
      const o = observers[i]!;
      if (o.codes[m.code] !== 1) continue;
      if (!o.see) o.seen.next(m);
      else {
        // As the operator would: its error fails its stream.
        try {
          o.see(m);
        } catch (err) {
          o.seen.error(err);
        }
      }
    }
  }

  /** Straight to the output (while the session lasts); what comes out while an observed message passes is dropped, injections aside. */
  readonly direct = (m: M): void => {
    if (!this.closed) this.write(m);
  };

  private write(m: M): void {
    if (!written(this.drop, m)) return;
    if (this.direction === 'toBackend') this.outputs.toBackend(m as unknown as FrontendMessage);
    else this.outputs.toClient(m as unknown as BackendMessage);
  }

  private error(err: unknown): void {
    this.outputs.error(err, this.direction);
  }

  build(stages: readonly Stage<M>[]): void {
    const direction = this.direction;
    if (!stages.some((s) => s.op)) return;
    const source = new Feed<M>();
    this.observers = [];
    let out: Observable<M> = source;
    let waiting: Subject<M>[] = [];
    stages.forEach(({ op, codes, ctx }, i) => {
      if (op) {
        if (waiting.length > 0) out = withInjections(out, waiting);
        waiting = [];
        out = out.pipe(codes ? declaredOnly(op, codes, this.drop, (seen) => (this.observers[i] = { codes, seen, see: seenBy(op) })) : op);
      }
      const injections = new Subject<M>();
      ctx.inject[direction] = (m) => injections.next(m as never);
      waiting.push(injections);
    });
    if (waiting.length > 0) out = withInjections(out, waiting);
    this.source = source;
    this.input = (m) => source.next(m);
    this.subscription = out.subscribe({ next: (m) => this.write(m), error: (err) => this.error(err) });
    // Stages register from the last one in; without the gaps of stages that declared nothing.
    this.observers = this.observers.filter((o) => o !== undefined);
  }

  fail(err: unknown): void {
    if (this.source) this.source.error(err);
    else this.error(err);
  }

  close(): void {
    this.closed = true;
    this.input = IGNORE;
    if (this.source) this.observers = [];
    this.subscription?.unsubscribe();
    this.source?.complete();
  }
}

/** A narrowed stage's input, where the lane shows it observed messages (`Lane.observe`). */
interface Observer<M> {
  codes: Uint8Array;
  seen: Feed<M>;
  /** An operator made by `observer`: its function, called directly. */
  see: ((m: M) => void) | undefined;
}
