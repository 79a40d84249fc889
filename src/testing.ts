/**
 * The plugin test kit (`pgward/plugin/testing`): runs middleware and auth providers in-process,
 * against scripted client and backend messages, as the proxy runs them — no sockets, no
 * PostgreSQL. See plugins/README.md, "Testing".
 */
export {
  startTestSession,
  type TestSession,
  type TestSessionOptions,
  type TestSessionEnd,
  type TestSessionEndReason,
  type TestPeer,
} from './plugins/test-session.js';
export { startTestLogin, testTokenServices, type TestLogin, type TestLoginOptions, type TestLoginOutcome, type TestTokens } from './plugins/test-login.js';
export { loadTestPlugins, type TestPlugins, type ReportedPluginError } from './plugins/test-plugin.js';
export type { LogRecord } from './plugins/test-log.js';
export { summarize } from './plugins/test-summary.js';
