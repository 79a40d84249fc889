import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { resolve as resolveModule } from 'import-meta-resolve';
import semver from 'semver';
import {
  HOOK_NAMES,
  PLUGIN_API_VERSION,
  type AuthProviderFactory,
  type HookName,
  type MiddlewareFactory,
  type Plugin,
  type PluginApi,
  type PluginHooks,
} from './api.js';
import { fenceMiddleware, type PluginErrorReporter } from './fence.js';

export type PluginErrorCode =
  | 'PGWARD_ERR_PLUGIN_NOT_FOUND'
  | 'PGWARD_ERR_PLUGIN_LOAD'
  | 'PGWARD_ERR_PLUGIN_INVALID'
  | 'PGWARD_ERR_PLUGIN_VERSION'
  | 'PGWARD_ERR_PLUGIN_API'
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

export interface RegistryOptions {
  /** pgward's version, checked against each plugin's `pgward` range. */
  version: string;
  /** Names taken by built-in middleware and auth providers. */
  builtinMiddleware: ReadonlySet<string>;
  builtinProviders: ReadonlySet<string>;
  onPluginError: PluginErrorReporter;
}

export interface LoaderOptions extends RegistryOptions {
  /** Where relative plugin paths start (the config file's folder, or the working directory). */
  baseDir: string;
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
  const { name, version, setup, pgward, pluginApi, dependencies } = p as Record<string, unknown>;
  if (typeof name !== 'string' || !NAME.test(name)) throw bad('name must be lower-case letters, digits, ".", "_" or "-"');
  if (typeof version !== 'string' || !semver.valid(version)) throw bad(`version "${String(version)}" is not a semver version`);
  if (typeof setup !== 'function') throw bad('setup must be a function');
  if (pgward !== undefined && (typeof pgward !== 'string' || !semver.validRange(pgward))) throw bad(`pgward range "${String(pgward)}" is invalid`);
  const apiVersion = typeof pluginApi === 'number' && Number.isSafeInteger(pluginApi) && pluginApi > 0;
  if (pluginApi !== undefined && !apiVersion && (typeof pluginApi !== 'string' || !semver.validRange(pluginApi))) {
    throw bad(`pluginApi "${String(pluginApi)}" is neither a version (e.g. 1) nor a range of them (e.g. "1 || 2")`);
  }
  if (dependencies !== undefined && (!Array.isArray(dependencies) || !dependencies.every((d) => typeof d === 'string'))) {
    throw bad('dependencies must be a list of plugin names');
  }
  return p as Plugin;
}

/**
 * Loads plugins in the order given, before any traffic: each is checked (shape, version ranges,
 * dependencies loaded earlier, unique names) and its `setup` runs; registration closes after.
 */
export async function loadPlugins(specs: readonly string[], opts: LoaderOptions): Promise<LoadedPlugins> {
  const registry = new Registry(opts);
  for (const spec of specs) await registry.install(validate(await importSpec(spec, opts.baseDir), spec));
  return registry;
}

/**
 * Sets up plugins given as the objects their modules export by default, exactly as
 * {@link loadPlugins} sets up the ones it imports: for the plugin test kit.
 */
export async function installPlugins(plugins: readonly unknown[], opts: RegistryOptions): Promise<LoadedPlugins> {
  const registry = new Registry(opts);
  for (const plugin of plugins) {
    const spec = String((plugin as { name?: unknown } | null)?.name ?? 'plugin');
    await registry.install(validate({ default: plugin }, spec));
  }
  return registry;
}

async function importSpec(spec: string, baseDir: string): Promise<unknown> {
  const url = resolveSpec(spec, baseDir);
  try {
    return await import(url);
  } catch (err) {
    // A module that is not there is "not found"; one that is there but fails to load is a load error.
    const missing = !existsSync(fileURLToPath(url));
    throw new PluginError(missing ? 'PGWARD_ERR_PLUGIN_NOT_FOUND' : 'PGWARD_ERR_PLUGIN_LOAD', spec, `cannot load ${url}: ${(err as Error).message}`, { cause: err });
  }
}

/** Whether this pgward's plugin API version is among those a plugin declares (`1`, `"1 || 2"`). */
function offersApi(wanted: number | string): boolean {
  return semver.satisfies(`${PLUGIN_API_VERSION}.0.0`, String(wanted));
}

class Registry implements LoadedPlugins {
  readonly plugins: Plugin[] = [];
  readonly middleware = new Map<string, Registered<MiddlewareFactory>>();
  readonly authProviders = new Map<string, Registered<AuthProviderFactory>>();
  private readonly hooks = new Map<HookName, { plugin: string; fn: (...a: unknown[]) => unknown }[]>();

  constructor(private readonly opts: RegistryOptions) {}

  async install(plugin: Plugin): Promise<void> {
    const { opts } = this;
    if (this.plugins.some((p) => p.name === plugin.name)) {
      throw new PluginError('PGWARD_ERR_PLUGIN_DUPLICATE', plugin.name, 'is loaded twice');
    }
    if (plugin.pgward && !semver.satisfies(semver.coerce(opts.version) ?? opts.version, plugin.pgward)) {
      throw new PluginError('PGWARD_ERR_PLUGIN_VERSION', plugin.name, `needs pgward ${plugin.pgward}, this is ${opts.version}`);
    }
    if (plugin.pluginApi !== undefined && !offersApi(plugin.pluginApi)) {
      throw new PluginError(
        'PGWARD_ERR_PLUGIN_API',
        plugin.name,
        `needs plugin API ${plugin.pluginApi}, pgward ${opts.version} offers plugin API ${PLUGIN_API_VERSION}`,
      );
    }
    for (const dep of plugin.dependencies ?? []) {
      if (!this.plugins.some((p) => p.name === dep)) {
        throw new PluginError('PGWARD_ERR_PLUGIN_DEPENDENCY', plugin.name, `depends on "${dep}", which must be listed (and load) before it`);
      }
    }
    let open = true;
    try {
      await plugin.setup(this.apiFor(plugin.name, () => open));
    } catch (err) {
      if (err instanceof PluginError) throw err;
      throw new PluginError('PGWARD_ERR_PLUGIN_SETUP', plugin.name, `setup failed: ${(err as Error).message}`, { cause: err });
    } finally {
      open = false;
    }
    this.plugins.push(plugin);
  }

  /** What one plugin's `setup` receives; it registers only while `open()`. */
  private apiFor(plugin: string, open: () => boolean): PluginApi {
    const { opts } = this;
    const refuse = (why: string) => new PluginError('PGWARD_ERR_PLUGIN_REGISTER', plugin, why);
    const guard = (what: string) => {
      if (!open()) throw refuse(`${what} is only possible during setup`);
    };
    const claim = (kind: string, name: string, builtin: ReadonlySet<string>, taken: ReadonlyMap<string, unknown>) => {
      if (!NAME.test(name)) throw refuse(`invalid ${kind} name "${name}"`);
      if (builtin.has(name) || taken.has(name)) throw refuse(`${kind} "${name}" is already registered`);
    };
    return {
      version: opts.version,
      apiVersion: PLUGIN_API_VERSION,
      registerMiddleware: (name, factory) => {
        guard('registerMiddleware');
        claim('middleware', name, opts.builtinMiddleware, this.middleware);
        this.middleware.set(name, { plugin, factory: fenceMiddleware(factory, plugin, opts.onPluginError) });
      },
      registerAuthProvider: (name, factory) => {
        guard('registerAuthProvider');
        claim('auth provider', name, opts.builtinProviders, this.authProviders);
        this.authProviders.set(name, { plugin, factory });
      },
      on: (hook, fn) => {
        guard('on');
        if (!HOOK_NAMES.includes(hook)) throw refuse(`unknown hook "${String(hook)}" (hooks: ${HOOK_NAMES.join(', ')})`);
        if (typeof fn !== 'function') throw refuse(`hook ${hook} needs a function`);
        const list = this.hooks.get(hook) ?? [];
        list.push({ plugin, fn: fn as (...a: unknown[]) => unknown });
        this.hooks.set(hook, list);
      },
    };
  }

  runHook<K extends HookName>(hook: K, ...args: Parameters<PluginHooks[K]>): Promise<void> {
    const list = this.hooks.get(hook);
    // Three hooks run per session: one no plugin registered costs no async call of its own.
    return list ? this.runEach(hook, list, args) : NOTHING_RUN;
  }

  private async runEach(hook: HookName, list: readonly { plugin: string; fn: (...a: unknown[]) => unknown }[], args: unknown[]): Promise<void> {
    for (const h of list) {
      try {
        await h.fn(...args);
      } catch (err) {
        this.opts.onPluginError(h.plugin, hook, err);
      }
    }
  }
}

const NOTHING_RUN: Promise<void> = Promise.resolve();

export function defaultBaseDir(configPath?: string): string {
  return configPath ? dirname(resolve(configPath)) : process.cwd();
}
