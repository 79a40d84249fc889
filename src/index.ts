/**
 * The public API of pgward for plugin and middleware authors and for embedding.
 */
export type {
  Middleware,
  MiddlewareContext,
  SessionContext,
  SessionHandlers,
  SessionState,
  SessionPhase,
  BackendStartup,
  Endpoint,
  SessionLogger,
} from './pipeline/middleware.js';
export type { FrontendMessage, BackendMessage, Message, TransactionStatus } from './protocol/index.js';
export { fe, be, PgError, SqlState } from './protocol/index.js';
export type { AuthProvider, AuthResult, ClientChannel } from './auth/provider.js';
export { startProxy, type RunningProxy } from './cli/start.js';
