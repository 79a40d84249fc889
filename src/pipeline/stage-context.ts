import type { BackendMessage, BackendType, FrontendMessage, FrontendType, PgError } from '../protocol/index.js';
import type { MessageCounts } from './counts.js';
import type { DropState } from './lane-operators.js';
import type { MiddlewareContext, SessionContext } from './middleware.js';
import { readTime } from './read-time.js';

/**
 * The context a middleware gets: the session's facts and controls (read through, so they stay
 * current) and injection at the middleware's own place in the chain. A class of its own, not an
 * object on the session's prototype chain, so sessions keep one shape.
 */
export class StageContext implements MiddlewareContext {
  readonly inject: { toClient: (m: BackendMessage) => void; toBackend: (m: FrontendMessage) => void };

  constructor(
    private readonly session: SessionContext,
    toClient: (m: BackendMessage) => void,
    toBackend: (m: FrontendMessage) => void,
    private readonly drop: DropState,
    private readonly counts: MessageCounts | undefined,
  ) {
    // A lane with operators gives the stage an entry point of its own; otherwise injections go straight out.
    this.inject = { toClient, toBackend };
  }

  get id() {
    return this.session.id;
  }
  get client() {
    return this.session.client;
  }
  get backend() {
    return this.session.backend;
  }
  get user() {
    return this.session.user;
  }
  get database() {
    return this.session.database;
  }
  get identity() {
    return this.session.identity;
  }
  get clientParams() {
    return this.session.clientParams;
  }
  get serverParams() {
    return this.session.serverParams;
  }
  get state() {
    return this.session.state;
  }
  get log() {
    return this.session.log;
  }
  get attributes() {
    return this.session.attributes;
  }
  get closed() {
    return this.session.closed;
  }
  get close(): (error?: PgError) => void {
    return this.session.close;
  }
  readTime(): number {
    return readTime();
  }
  messageCount(direction: 'frontend' | 'backend', type: FrontendType | BackendType): number {
    return this.counts?.count(direction, type) ?? 0;
  }
  // Own properties, like the session's own controls: they work detached from the context too.
  readonly sendToClient = (...messages: BackendMessage[]): void => {
    this.drop.injecting++;
    try {
      for (const m of messages) this.inject.toClient(m);
    } finally {
      this.drop.injecting--;
    }
  };
  readonly sendToBackend = (...messages: FrontendMessage[]): void => {
    this.drop.injecting++;
    try {
      for (const m of messages) this.inject.toBackend(m);
    } finally {
      this.drop.injecting--;
    }
  };
}
