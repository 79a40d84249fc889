import type { AuthProvider } from '../auth/provider.js';
import type { Middleware } from '../pipeline/middleware.js';
import { pgwardVersion } from '../util/version.js';
import type { AuthServices, HookName, Plugin, PluginHooks } from './api.js';
import { installPlugins } from './loader.js';

/** An error a plugin raised at run time: what the proxy logs as `plugin error` and counts. */
export interface ReportedPluginError {
  readonly plugin: string;
  /** `session`, `frontend`, `backend`, `beforeBackendStartup`, or a hook's name. */
  readonly where: string;
  readonly error: unknown;
}

export interface TestPlugins {
  readonly plugins: readonly Plugin[];
  /**
   * The middleware a plugin registered under `name`, built from `options` as a `pipeline:` entry
   * builds it, and fenced as the proxy fences it (errors reported, the session ended with XX000
   * or the plugin's own PgError). Bad options throw, as they stop `pgward start`.
   */
  middleware(name: string, options?: unknown): Middleware;
  /** The auth provider a plugin registered under `name`, built as `auth: { provider: name, …options }` builds it. */
  authProvider(name: string, services: AuthServices, options?: Readonly<Record<string, unknown>>): AuthProvider;
  /** Runs every plugin's hook of this name, as the proxy does (a failing hook is reported, not thrown). */
  runHook<K extends HookName>(hook: K, ...args: Parameters<PluginHooks[K]>): Promise<void>;
  /** Errors plugins raised at run time, in order. */
  readonly errors: readonly ReportedPluginError[];
}

/**
 * Sets plugins up exactly as `plugins:` in the config does — the same checks (shape, `pgward` and
 * `pluginApi` ranges, dependencies, names) and the same `setup` call — from the objects their
 * modules export by default. Load failures reject with the same coded errors
 * (`PGWARD_ERR_PLUGIN_*`). Only names taken by pgward's built-ins are not checked here.
 */
export async function loadTestPlugins(plugins: Plugin | readonly Plugin[], opts: { version?: string } = {}): Promise<TestPlugins> {
  const errors: ReportedPluginError[] = [];
  const loaded = await installPlugins(Array.isArray(plugins) ? plugins : [plugins], {
    version: opts.version ?? pgwardVersion(),
    builtinMiddleware: new Set(),
    builtinProviders: new Set(),
    onPluginError: (plugin, where, error) => void errors.push({ plugin, where, error }),
  });
  const find = <F>(kind: string, registry: ReadonlyMap<string, { factory: F }>, name: string): F => {
    const entry = registry.get(name);
    if (!entry) throw new Error(`no ${kind} "${name}" was registered (registered: ${[...registry.keys()].join(', ') || 'none'})`);
    return entry.factory;
  };
  return {
    plugins: loaded.plugins,
    middleware: (name, options) => find('middleware', loaded.middleware, name)(options),
    authProvider: (name, services, options = {}) => find('auth provider', loaded.authProviders, name)(services, options),
    runHook: (hook, ...args) => loaded.runHook(hook, ...args),
    errors,
  };
}
