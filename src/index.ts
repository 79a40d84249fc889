/**
 * The public API of pgward (`pgward` and `pgward/plugin`): the types middleware and plugin
 * authors write against, message encoders, errors, and the embedding entry point.
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
export type {
  FrontendMessage,
  BackendMessage,
  FrontendType,
  BackendType,
  FrontendBody,
  BackendBody,
  Message,
  TransactionStatus,
  FieldDescription,
  ErrorFields,
  Severity,
} from './protocol/index.js';
export { fe, be, PgError, SqlState, decodePassword } from './protocol/index.js';
export type { AuthProvider, AuthResult, ClientChannel, ClientHandshakeDone } from './auth/provider.js';
export {
  definePlugin,
  HOOK_NAMES,
  type Plugin,
  type PluginApi,
  type PluginHooks,
  type HookName,
  type MiddlewareFactory,
  type AuthProviderFactory,
  type AuthServices,
} from './plugins/api.js';
export { startProxy, type RunningProxy } from './cli/start.js';
