/**
 * Plugin modules for the loader's tests: tiny .mjs files written into a temporary folder (removed
 * after the file's tests), whose `setup` calls back into the test through a global, so each case
 * decides in TypeScript what its plugins do.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { BUILTIN_PROVIDERS } from '../../src/cli/runtime.js';
import { BUILTIN_MIDDLEWARE_NAMES } from '../../src/middleware/registry.js';
import type { PluginApi } from '../../src/plugins/api.js';
import { loadPlugins, PluginError, type LoadedPlugins, type PluginErrorCode } from '../../src/plugins/loader.js';

export type SetupFn = (api: PluginApi) => void | Promise<void>;
export interface Bridge {
  setups: Map<string, SetupFn>;
  order: string[];
}

export interface PluginFields {
  name?: unknown;
  version?: unknown;
  pgward?: unknown;
  pluginApi?: unknown;
  dependencies?: unknown;
}

export interface Reported {
  plugin: string;
  where: string;
  error: unknown;
}

/** Call once at the top of a test file: registers the folder's before/after hooks and returns the case helpers. */
export function pluginCases() {
  const bridge: Bridge = { setups: new Map(), order: [] };
  (globalThis as { __pgwardLoaderTest?: Bridge }).__pgwardLoaderTest = bridge;
  let root: string;
  let caseNo = 0;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'pgward-loader-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  /** A plugin module whose setup records its name in `bridge.order` and runs `bridge.setups.get(name)`. */
  function pluginSource(fields: PluginFields): string {
    const f = { version: '1.0.0', ...fields };
    const props = Object.entries(f)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `  ${k}: ${JSON.stringify(v)},`)
      .join('\n');
    return `const bridge = globalThis.__pgwardLoaderTest;
export default {
${props}
  setup(api) {
    bridge.order.push(${JSON.stringify(String(f.name))});
    return bridge.setups.get(${JSON.stringify(String(f.name))})?.(api);
  },
};
`;
  }

  /** A fresh folder per case: ES modules are cached by URL, so files are never reused. */
  async function caseDir(): Promise<string> {
    const dir = join(root, `case-${++caseNo}`);
    await mkdir(dir, { recursive: true });
    return dir;
  }

  function load(specs: string[], baseDir: string, version = '0.1.0'): { loading: Promise<LoadedPlugins>; reported: Reported[] } {
    const reported: Reported[] = [];
    const loading = loadPlugins(specs, {
      baseDir,
      version,
      builtinMiddleware: BUILTIN_MIDDLEWARE_NAMES,
      builtinProviders: BUILTIN_PROVIDERS,
      onPluginError: (plugin, where, error) => reported.push({ plugin, where, error }),
    });
    return { loading, reported };
  }

  /** Asserts a PluginError with this code, naming `plugin` in its field and its message. */
  function pluginError(code: PluginErrorCode, plugin: string, message?: RegExp) {
    return (err: unknown) => {
      assert.ok(err instanceof PluginError, `expected a PluginError, got ${String(err)}`);
      assert.equal(err.code, code, err.message);
      assert.equal(err.plugin, plugin);
      assert.ok(err.message.startsWith(`${code}: plugin "${plugin}"`), err.message);
      if (message) assert.match(err.message, message);
      return true;
    };
  }

  return { bridge, pluginSource, caseDir, load, pluginError };
}
