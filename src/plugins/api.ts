import type { AuthProvider, AuthResult, ClientChannel } from '../auth/provider.js';
import type { Middleware, SessionContext } from '../pipeline/middleware.js';

/**
 * The version of the plugin API: what `pgward/plugin` and `pgward/plugin/testing` promise plugin
 * authors, counted apart from pgward's own version. It goes up by one with a change that could
 * break a plugin written against the one before (an export removed or renamed, a type or a
 * behaviour changed in meaning); additions leave it as it is. A plugin names the API versions it
 * works with in `pluginApi`, and the loader refuses it (PGWARD_ERR_PLUGIN_API) when this one is
 * not among them.
 */
export const PLUGIN_API_VERSION = 1;

/** Moments a plugin may hook, in the order they happen. */
export interface PluginHooks {
  /** The listener is open and the proxy serves. */
  onReady(): void | Promise<void>;
  /** A client finished the startup packet (before authentication). */
  onSessionStart(session: SessionContext): void | Promise<void>;
  /** The client authenticated and its backend is connected; the relay is about to start. */
  onAuthenticated(session: SessionContext): void | Promise<void>;
  /** The session has ended, whatever the reason. */
  onSessionEnd(session: SessionContext): void | Promise<void>;
  /** The process is about to stop (after drain). */
  preClose(): void | Promise<void>;
}

export type HookName = keyof PluginHooks;
export const HOOK_NAMES: readonly HookName[] = ['onReady', 'onSessionStart', 'onAuthenticated', 'onSessionEnd', 'preClose'];

/** Builds a middleware from its `pipeline:` options; throw to report bad options. */
export type MiddlewareFactory = (options: unknown) => Middleware;

/** What an auth provider registered by a plugin may use of pgward's own machinery. */
export interface AuthServices {
  /**
   * Verifies a token exactly as the `jwt` provider does (keys, algorithms, exp/nbf/iss/aud) and
   * routes it through the backends file. Throws a PgError (28P01 / 28000) when refused.
   */
  resolveToken(token: string, channel: ClientChannel, opts?: { matchStartupUser?: boolean }): Promise<AuthResult>;
}

/** Builds the provider; `options` are the other keys of the config's `auth:` mapping. */
export type AuthProviderFactory = (services: AuthServices, options: Readonly<Record<string, unknown>>) => AuthProvider;

/** What `setup(api)` receives. Registration is only possible during setup. */
export interface PluginApi {
  /** pgward's version. */
  readonly version: string;
  /** The plugin API version this pgward offers ({@link PLUGIN_API_VERSION}). */
  readonly apiVersion: number;
  /** Makes a middleware usable in `pipeline:` under `name`. */
  registerMiddleware(name: string, factory: MiddlewareFactory): void;
  /** Makes an auth provider usable as `auth: { provider: name }`. */
  registerAuthProvider(name: string, factory: AuthProviderFactory): void;
  /** Adds a lifecycle hook; see PluginHooks for when each fires. */
  on<K extends HookName>(hook: K, fn: PluginHooks[K]): void;
}

/** A plugin module's default export. */
export interface Plugin {
  /** Unique name, e.g. "proxy-login". */
  readonly name: string;
  /** The plugin's own version (semver). */
  readonly version: string;
  /** The pgward versions it works with, e.g. ">=0.1". */
  readonly pgward?: string;
  /**
   * The plugin API versions it works with: a version (`1`) or a semver range over them
   * (`"1 || 2"`, `">=1"`). Checked at load time, apart from `pgward`.
   */
  readonly pluginApi?: number | string;
  /** Names of plugins that must be loaded before this one. */
  readonly dependencies?: readonly string[];
  setup(api: PluginApi): void | Promise<void>;
}

/** Identity helper that gives a plugin definition its types. */
export function definePlugin(plugin: Plugin): Plugin {
  return plugin;
}
