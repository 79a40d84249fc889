import type { BackendMessage, FrontendMessage } from '../protocol/index.js';
import type { Endpoint, SessionLogger } from '../pipeline/middleware.js';
import type { BackendTarget } from '../backend/url.js';

/** The client as an auth provider sees it: send requests, read the replies. */
export interface ClientChannel {
  readonly client: Endpoint;
  /** Startup parameters as the client sent them. */
  readonly startup: ReadonlyMap<string, string>;
  readonly log: SessionLogger;
  /** Queues messages to the client; they leave together at the end of the tick. */
  send(...messages: BackendMessage[]): void;
  /** The client's next message (rejects when the client goes away). */
  read(): Promise<FrontendMessage>;
  /**
   * Issues the session's cancel key now, for providers that finish the client handshake before
   * any backend exists (statement login); cancels with it reach the backend once connected.
   */
  reserveCancelKey(): { processId: number; secretKey: Buffer };
  /**
   * Tells the proxy the client handshake is complete (the provider sent AuthenticationOk …
   * ReadyForQuery itself): --authTimeout stops applying and the provider bounds the wait itself.
   */
  handshakeComplete(): void;
}

/** Set by a provider that completed the client handshake itself (AuthenticationOk … ReadyForQuery). */
export interface ClientHandshakeDone {
  /** ParameterStatus values the client was already given; the backend's differing ones follow. */
  sentParameters: ReadonlyMap<string, string>;
  /** Sent to the client once the backend is connected (e.g. the result of the login statement). */
  completion: BackendMessage[];
}

/** What a successful authentication decides. */
export interface AuthResult {
  /** Where to connect, with the credentials to log in with (never shown to the client). */
  target: BackendTarget;
  /** Who the client is, for logs and metrics (a subject or user name, never a secret). */
  identity: string;
  /** When the client's credential stops being valid (ms since epoch), if it does. */
  expiresAt?: number;
  /** The verified token's `sub` and `jti`, when it has them (console rows, revocation). */
  subject?: string;
  tokenId?: string;
  /** An administrator asked for the console database: pgward answers, no backend (SPEC §10). */
  console?: boolean;
  clientHandshake?: ClientHandshakeDone;
  /**
   * The client's own password goes to the backend, which is what checks it (passthrough without
   * credsOverride): the login counts as a success or failure only once the backend has answered.
   */
  checkedByBackend?: boolean;
}

/**
 * An auth provider is a strategy for the startup phase: it asks the client for whatever it
 * needs, decides, and returns the backend to use, or throws a PgError (FATAL 28000/28P01…).
 */
export interface AuthProvider {
  readonly name: string;
  authenticate(channel: ClientChannel): Promise<AuthResult>;
}
