import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { resolve as resolveModule } from 'import-meta-resolve';
import { catchError, throwError } from 'rxjs';
import semver from 'semver';
import type { Middleware, SessionHandlers } from '../pipeline/middleware.js';
import { PgError, SqlState } from '../protocol/index.js';
import {
  HOOK_NAMES,
  type AuthProviderFactory,
  type HookName,
  type MiddlewareFactory,
  type Plugin,
  type PluginApi,
  type PluginHooks,
} from './api.js';

export type PluginErrorCode =
  | 'PGWARD_ERR_PLUGIN_NOT_FOUND'
  | 'PGWARD_ERR_PLUGIN_LOAD'
  | 'PGWARD_ERR_PLUGIN_INVALID'
  | 'PGWARD_ERR_PLUGIN_VERSION'
  | 'PGWARD_ERR_PLUGIN_DEPENDENCY'
  | 'PGWARD_ERR_PLUGIN_DUPLICATE'
  | 'PGWARD_ERR_PLUGIN_REGISTER'
  | 'PGWARD_ERR_PLUGIN_SETUP';

export class PluginError extends Error {
  constructor(
    readonly code: PluginErrorCode,
    readonly plugin: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${code}: plugin "${plugin}": ${message}`, options);
    this.name = 'PluginError';
  }
}

export interface Registered<F> {
  plugin: string;
  factory: F;
}

export interface LoadedPlugins {
  readonly plugins: readonly Plugin[];
  readonly middleware: ReadonlyMap<string, Registered<MiddlewareFactory>>;
  readonly authProviders: ReadonlyMap<string, Registered<AuthProviderFactory>>;
  /** Runs every plugin's hook of this name in load order; a failing hook is reported, not thrown. */
  runHook<K extends HookName>(hook: K, ...args: Parameters<PluginHooks[K]>): Promise<void>;
}

export interface LoaderOptions {
  /** Where relative plugin paths start (the config file's folder, or the working directory). */
  baseDir: string;
  /** pgward's version, checked against each plugin's `pgward` range. */
  version: string;
  /** Names taken by built-in middleware and auth providers. */
  builtinMiddleware: ReadonlySet<string>;
  builtinProviders: ReadonlySet<string>;
  /** Told about every error a plugin raises at run time (for logs and metrics). */
  onPluginError(plugin: string, where: string, error: unknown): void;
}

const NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/** Resolves a `plugins:` entry to a file URL: a path (file or folder with package.json) or a package name. */
function resolveSpec(spec: string, baseDir: string): string {
  if (spec.startsWith('.') || isAbsolute(spec)) {
    let path = resolve(baseDir, spec);
    const st = statSync(path, { throwIfNoEntry: false });
    if (!st) throw new PluginError('PGWARD_ERR_PLUGIN_NOT_FOUND', spec, `no file or folder at ${path}`);
    if (st.isDirectory()) {
      const pkgPath = join(path, 'package.json');
      const pkg = statSync(pkgPath, { throwIfNoEntry: false })
        ? (JSON.parse(readFileSync(pkgPath, 'utf8')) as { main?: string })
        : {};
      path = join(path, pkg.main ?? 'index.js');
    }
    return pathToFileURL(path).href;
  }
  try {
    // Node's own ES module resolution (exports conditions, scoped names, node_modules above
    // baseDir), which import.meta.resolve only offers from this file's location.
    return resolveModule(spec, pathToFileURL(join(baseDir, 'noop.js')).href);
  } catch (err) {
    throw new PluginError('PGWARD_ERR_PLUGIN_NOT_FOUND', spec, `cannot resolve package from ${baseDir}`, { cause: err });
  }
}

function validate(mod: unknown, spec: string): Plugin {
  const p = (mod as { default?: unknown }).default;
  const bad = (why: string) => new PluginError('PGWARD_ERR_PLUGIN_INVALID', spec, why);
  if (!p || typeof p !== 'object') throw bad('the module has no default export object (use definePlugin)');
  const { name, version, setup, pgward, dependencies } = p as Record<string, unknown>;
  if (typeof name !== 'string' || !NAME.test(name)) throw bad('name must be lower-case letters, digits, ".", "_" or "-"');
  if (typeof version !== 'string' || !semver.valid(version)) throw bad(`version "${String(version)}" is not a semver version`);
  if (typeof setup !== 'function') throw bad('setup must be a function');
  if (pgward !== undefined && (typeof pgward !== 'string' || !semver.validRange(pgward))) throw bad(`pgward range "${String(pgward)}" is invalid`);
  if (dependencies !== undefined && (!Array.isArray(dependencies) || !dependencies.every((d) => typeof d === 'string'))) {
    throw bad('dependencies must be a list of plugin names');
  }
  return p as Plugin;
}

/**
 * Loads plugins in the order given, before any traffic: each is checked (shape, version range,
 * dependencies loaded earlier, unique names) and its `setup` runs; registration closes after.
 */
export async function loadPlugins(specs: readonly string[], opts: LoaderOptions): Promise<LoadedPlugins> {
  const plugins: Plugin[] = [];
  const middleware = new Map<string, Registered<MiddlewareFactory>>();
  const authProviders = new Map<string, Registered<AuthProviderFactory>>();
  const hooks = new Map<HookName, { plugin: string; fn: (...a: unknown[]) => unknown }[]>();

  for (const spec of specs) {
    let mod: unknown;
    const url = resolveSpec(spec, opts.baseDir);
    try {
      mod = await import(url);
    } catch (err) {
      // A module that is not there is "not found"; one that is there but fails to load is a load error.
      const missing = !existsSync(fileURLToPath(url));
      throw new PluginError(missing ? 'PGWARD_ERR_PLUGIN_NOT_FOUND' : 'PGWARD_ERR_PLUGIN_LOAD', spec, `cannot load ${url}: ${(err as Error).message}`, { cause: err });
    }
    const plugin = validate(mod, spec);
    if (plugins.some((p) => p.name === plugin.name)) {
      throw new PluginError('PGWARD_ERR_PLUGIN_DUPLICATE', plugin.name, 'is loaded twice');
    }
    if (plugin.pgward && !semver.satisfies(semver.coerce(opts.version) ?? opts.version, plugin.pgward)) {
      throw new PluginError('PGWARD_ERR_PLUGIN_VERSION', plugin.name, `needs pgward ${plugin.pgward}, this is ${opts.version}`);
    }
    for (const dep of plugin.dependencies ?? []) {
      if (!plugins.some((p) => p.name === dep)) {
        throw new PluginError('PGWARD_ERR_PLUGIN_DEPENDENCY', plugin.name, `depends on "${dep}", which must be listed (and load) before it`);
      }
    }
    let open = true;
    const guard = (what: string) => {
      if (!open) throw new PluginError('PGWARD_ERR_PLUGIN_REGISTER', plugin.name, `${what} is only possible during setup`);
    };
    const api: PluginApi = {
      version: opts.version,
      registerMiddleware(name, factory) {
        guard('registerMiddleware');
        if (!NAME.test(name)) throw new PluginError('PGWARD_ERR_PLUGIN_REGISTER', plugin.name, `invalid middleware name "${name}"`);
        if (opts.builtinMiddleware.has(name) || middleware.has(name)) {
          throw new PluginError('PGWARD_ERR_PLUGIN_REGISTER', plugin.name, `middleware "${name}" is already registered`);
        }
        middleware.set(name, { plugin: plugin.name, factory: guardFactory(factory, plugin.name, opts.onPluginError) });
      },
      registerAuthProvider(name, factory) {
        guard('registerAuthProvider');
        if (!NAME.test(name)) throw new PluginError('PGWARD_ERR_PLUGIN_REGISTER', plugin.name, `invalid auth provider name "${name}"`);
        if (opts.builtinProviders.has(name) || authProviders.has(name)) {
          throw new PluginError('PGWARD_ERR_PLUGIN_REGISTER', plugin.name, `auth provider "${name}" is already registered`);
        }
        authProviders.set(name, { plugin: plugin.name, factory });
      },
      on(hook, fn) {
        guard('on');
        if (!HOOK_NAMES.includes(hook)) {
          throw new PluginError('PGWARD_ERR_PLUGIN_REGISTER', plugin.name, `unknown hook "${String(hook)}" (hooks: ${HOOK_NAMES.join(', ')})`);
        }
        if (typeof fn !== 'function') throw new PluginError('PGWARD_ERR_PLUGIN_REGISTER', plugin.name, `hook ${hook} needs a function`);
        const list = hooks.get(hook) ?? [];
        list.push({ plugin: plugin.name, fn: fn as (...a: unknown[]) => unknown });
        hooks.set(hook, list);
      },
    };
    try {
      await plugin.setup(api);
    } catch (err) {
      if (err instanceof PluginError) throw err;
      throw new PluginError('PGWARD_ERR_PLUGIN_SETUP', plugin.name, `setup failed: ${(err as Error).message}`, { cause: err });
    } finally {
      open = false;
    }
    plugins.push(plugin);
  }

  return {
    plugins,
    middleware,
    authProviders,
    async runHook(hook, ...args) {
      for (const h of hooks.get(hook) ?? []) {
        try {
          await h.fn(...args);
        } catch (err) {
          opts.onPluginError(h.plugin, hook, err);
        }
      }
    },
  };
}

/**
 * A plugin's middleware, fenced: an error it raises (in setup of a session or inside its streams)
 * is reported with the plugin's name and ends only that session, with an ErrorResponse.
 */
function guardFactory(factory: MiddlewareFactory, plugin: string, report: LoaderOptions['onPluginError']): MiddlewareFactory {
  return (options) => {
    const mw = factory(options);
    const fence = (where: string) => (err: unknown) => {
      if (err instanceof PassingThrough) return throwError(() => err.error);
      report(plugin, where, err);
      return throwError(() =>
        err instanceof PgError ? err : new PgError('FATAL', SqlState.InternalError, `plugin "${plugin}" failed`, { cause: err }),
      );
    };
    const wrapped: Middleware = {
      name: mw.name,
      beforeBackendStartup: mw.beforeBackendStartup
        ? async (startup) => {
            try {
              await mw.beforeBackendStartup!(startup);
            } catch (err) {
              report(plugin, 'beforeBackendStartup', err);
              throw err instanceof PgError ? err : new PgError('FATAL', SqlState.InternalError, `plugin "${plugin}" failed`, { cause: err });
            }
          }
        : undefined,
      session: mw.session
        ? (ctx) => {
            let h: SessionHandlers | void;
            try {
              h = mw.session!(ctx);
            } catch (err) {
              report(plugin, 'session', err);
              throw err instanceof PgError ? err : new PgError('FATAL', SqlState.InternalError, `plugin "${plugin}" failed`, { cause: err });
            }
            if (!h) return h;
            const { frontend, backend } = h;
            return {
              ...h,
              frontend: frontend && ((s) => frontend(s.pipe(catchError(passThrough))).pipe(catchError(fence('frontend')))),
              backend: backend && ((s) => backend(s.pipe(catchError(passThrough))).pipe(catchError(fence('backend')))),
            };
          }
        : undefined,
    };
    return wrapped;
  };
}

/** An error from upstream of a plugin's operator, carried through it without blaming the plugin. */
class PassingThrough extends Error {
  constructor(readonly error: unknown) {
    super('upstream error passing through a plugin', { cause: error });
  }
}
const passThrough = (error: unknown) => throwError(() => new PassingThrough(error));

export function defaultBaseDir(configPath?: string): string {
  return configPath ? dirname(resolve(configPath)) : process.cwd();
}
