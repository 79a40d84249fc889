/**
 * The plugin API (`pgward/plugin`, also `pgward`): what middleware, auth providers and plugins
 * are written against, and nothing of pgward's insides. Its version is PLUGIN_API_VERSION.
 * The test kit is `pgward/plugin/testing` (src/testing.ts); embedding the whole proxy is
 * `pgward/embed` (src/embed.ts).
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
export { splitStatements, withoutComments, redactSql, firstKeyword, parseCommandTag, type SqlTextOptions } from './sql/text.js';
export { observer } from './pipeline/lane-operators.js';
export type { AuthProvider, AuthResult, ClientChannel, ClientHandshakeDone } from './auth/provider.js';
export type { BackendTarget, SslMode } from './backend/url.js';
export {
  definePlugin,
  HOOK_NAMES,
  PLUGIN_API_VERSION,
  type Plugin,
  type PluginApi,
  type PluginHooks,
  type HookName,
  type MiddlewareFactory,
  type AuthProviderFactory,
  type AuthServices,
} from './plugins/api.js';
