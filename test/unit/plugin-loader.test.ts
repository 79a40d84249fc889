import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { PLUGIN_API_VERSION, type PluginApi } from '../../src/plugins/api.js';
import { pluginCases, type SetupFn } from '../helpers/plugin-cases.js';

const { bridge, pluginSource, caseDir, load, pluginError } = pluginCases();

describe('plugin loader: finding and loading modules', () => {
  it('loads plugins in the order listed and runs each setup once, in that order', async () => {
    const dir = await caseDir();
    bridge.order.length = 0;
    for (const n of ['zeta', 'alpha', 'mid']) await writeFile(join(dir, `${n}.mjs`), pluginSource({ name: n }));
    const { loading } = load(['./zeta.mjs', './alpha.mjs', './mid.mjs'], dir);
    const loaded = await loading;
    assert.deepEqual(loaded.plugins.map((p) => p.name), ['zeta', 'alpha', 'mid']);
    assert.deepEqual(bridge.order, ['zeta', 'alpha', 'mid']);
  });

  it('resolves relative paths from baseDir, absolute paths as they are, and folders through package.json main', async () => {
    const dir = await caseDir();
    await mkdir(join(dir, 'conf'));
    await mkdir(join(dir, 'with-main', 'lib'), { recursive: true });
    await writeFile(join(dir, 'with-main', 'package.json'), JSON.stringify({ type: 'module', main: './lib/entry.js' }));
    await writeFile(join(dir, 'with-main', 'lib', 'entry.js'), pluginSource({ name: 'with-main' }));
    // A package.json without main: index.js (an ES module through "type": "module").
    await mkdir(join(dir, 'no-main'));
    await writeFile(join(dir, 'no-main', 'index.js'), pluginSource({ name: 'no-main' }));
    await writeFile(join(dir, 'no-main', 'package.json'), JSON.stringify({ type: 'module' }));
    await writeFile(join(dir, 'abs.mjs'), pluginSource({ name: 'abs' }));
    const { loading } = load(['../with-main', '../no-main', join(dir, 'abs.mjs')], join(dir, 'conf'));
    const loaded = await loading;
    assert.deepEqual(loaded.plugins.map((p) => p.name), ['with-main', 'no-main', 'abs']);
  });

  it('resolves package names from node_modules above baseDir the way import does, ES-module-only exports included', async () => {
    const dir = await caseDir();
    await mkdir(join(dir, 'conf', 'deeper'), { recursive: true });
    // Only an "import" condition: require.resolve cannot see it, import can.
    const esm = join(dir, 'node_modules', 'pgward-plugin-esm-only');
    await mkdir(join(esm, 'lib'), { recursive: true });
    await writeFile(join(esm, 'package.json'), JSON.stringify({ name: 'pgward-plugin-esm-only', type: 'module', exports: { '.': { import: './lib/plugin.js' } } }));
    await writeFile(join(esm, 'lib', 'plugin.js'), pluginSource({ name: 'esm-only' }));
    // A scoped package with a plain "main".
    const scoped = join(dir, 'node_modules', '@acme', 'pgward-audit');
    await mkdir(scoped, { recursive: true });
    await writeFile(join(scoped, 'package.json'), JSON.stringify({ name: '@acme/pgward-audit', type: 'module', main: 'main.js' }));
    await writeFile(join(scoped, 'main.js'), pluginSource({ name: 'audit' }));
    const loaded = await load(['pgward-plugin-esm-only', '@acme/pgward-audit'], join(dir, 'conf', 'deeper')).loading;
    assert.deepEqual(loaded.plugins.map((p) => p.name), ['esm-only', 'audit']);
    // A package whose exports allow only require() is not loadable as an ES module: not found.
    const cjsOnly = join(dir, 'node_modules', 'pgward-plugin-require-only');
    await mkdir(cjsOnly, { recursive: true });
    await writeFile(join(cjsOnly, 'package.json'), JSON.stringify({ name: 'pgward-plugin-require-only', exports: { require: './x.cjs' } }));
    await writeFile(join(cjsOnly, 'x.cjs'), 'module.exports = {};\n');
    await assert.rejects(load(['pgward-plugin-require-only'], dir).loading, pluginError('PGWARD_ERR_PLUGIN_NOT_FOUND', 'pgward-plugin-require-only'));
  });

  it('reports a missing file (PGWARD_ERR_PLUGIN_NOT_FOUND) naming the entry', async () => {
    const dir = await caseDir();
    await assert.rejects(load(['./missing.mjs'], dir).loading, pluginError('PGWARD_ERR_PLUGIN_NOT_FOUND', './missing.mjs', /no file or folder/));
  });

  it('reports a module that exists but fails to load (PGWARD_ERR_PLUGIN_LOAD)', async () => {
    const dir = await caseDir();
    await writeFile(join(dir, 'broken.mjs'), 'throw new Error("exploded at import");\n');
    await assert.rejects(load(['./broken.mjs'], dir).loading, pluginError('PGWARD_ERR_PLUGIN_LOAD', './broken.mjs', /exploded at import/));
  });

  it('reports an unknown package name (PGWARD_ERR_PLUGIN_NOT_FOUND)', async () => {
    const dir = await caseDir();
    await assert.rejects(load(['pgward-plugin-that-does-not-exist'], dir).loading, pluginError('PGWARD_ERR_PLUGIN_NOT_FOUND', 'pgward-plugin-that-does-not-exist'));
  });

  it('reports a folder whose package.json main points nowhere (PGWARD_ERR_PLUGIN_NOT_FOUND)', async () => {
    const dir = await caseDir();
    await mkdir(join(dir, 'broken'));
    await writeFile(join(dir, 'broken', 'package.json'), JSON.stringify({ main: './dist/nothing.js' }));
    await assert.rejects(load(['./broken'], dir).loading, pluginError('PGWARD_ERR_PLUGIN_NOT_FOUND', './broken', /cannot load/));
  });
});

describe('plugin loader: the shipped deny-statements template', () => {
  /** The compiled test lives at dist/test/unit/; its package.json main points into dist/. */
  const REPO = fileURLToPath(new URL('../../../', import.meta.url));

  it('loads from its folder and validates its middleware options', async () => {
    const loaded = await load(['./plugins/deny-statements'], REPO).loading;
    assert.deepEqual(loaded.plugins.map((p) => [p.name, p.pgward]), [['deny-statements', '>=0.1']]);
    const factory = loaded.middleware.get('deny-statements')!.factory;
    assert.equal(factory({ pattern: '^\\s*drop\\b' }).name, 'deny-statements');
    assert.equal(factory({ pattern: 'truncate', flags: 'is', message: "no 'truncate' \\ here" }).name, 'deny-statements');
    const bad: [unknown, RegExp][] = [
      [undefined, /options must be a mapping/],
      [{}, /"pattern" .* is required/],
      [{ pattern: '' }, /"pattern" .* is required/],
      [{ pattern: '(' }, /invalid pattern/],
      [{ pattern: 'x', flags: 'g' }, /without g or y/],
      [{ pattern: 'x', flags: 'q' }, /invalid pattern/],
      [{ pattern: 'x', message: '' }, /"message"/],
      [{ pattern: 'x', colour: 'red' }, /unknown option\(s\) colour/],
    ];
    for (const [options, message] of bad) {
      assert.throws(() => factory(options), (err: unknown) => {
        assert.ok(err instanceof Error && err.message.startsWith('deny-statements: '), String(err));
        assert.match(err.message, message);
        return true;
      }, JSON.stringify(options));
    }
  });
});

describe('plugin loader: checks before setup', () => {
  const invalid: [string, string, RegExp][] = [
    ['no default export', 'export const plugin = { name: "x", version: "1.0.0", setup() {} };', /no default export/],
    ['a default that is not an object', 'export default 42;', /no default export/],
    ['an invalid name', pluginSource({ name: 'Bad Name' }), /name must be/],
    ['a missing name', pluginSource({}), /name must be/],
    ['a version that is not semver', pluginSource({ name: 'v', version: 'one' }), /not a semver version/],
    ['an invalid pgward range', pluginSource({ name: 'r', pgward: 'not a range!' }), /pgward range/],
    ['a pluginApi of 0', pluginSource({ name: 'a', pluginApi: 0 }), /pluginApi "0" is neither a version/],
    ['a fractional pluginApi', pluginSource({ name: 'a', pluginApi: 1.5 }), /pluginApi "1.5" is neither/],
    ['a pluginApi that is not a range', pluginSource({ name: 'a', pluginApi: 'one' }), /pluginApi "one" is neither/],
    ['dependencies that are not a list of names', pluginSource({ name: 'd', dependencies: 'other' }), /dependencies must be/],
    ['no setup function', 'export default { name: "nosetup", version: "1.0.0", setup: "yes" };', /setup must be a function/],
  ];
  for (const [what, source, message] of invalid) {
    it(`refuses ${what} (PGWARD_ERR_PLUGIN_INVALID)`, async () => {
      const dir = await caseDir();
      await writeFile(join(dir, 'p.mjs'), source);
      await assert.rejects(load(['./p.mjs'], dir).loading, pluginError('PGWARD_ERR_PLUGIN_INVALID', './p.mjs', message));
    });
  }

  it('refuses two plugins with the same name (PGWARD_ERR_PLUGIN_DUPLICATE), the second never set up', async () => {
    const dir = await caseDir();
    bridge.order.length = 0;
    await writeFile(join(dir, 'one.mjs'), pluginSource({ name: 'dup' }));
    await writeFile(join(dir, 'two.mjs'), pluginSource({ name: 'dup', version: '2.0.0' }));
    await assert.rejects(load(['./one.mjs', './two.mjs'], dir).loading, pluginError('PGWARD_ERR_PLUGIN_DUPLICATE', 'dup', /loaded twice/));
    assert.deepEqual(bridge.order, ['dup']);
  });

  it('refuses a plugin whose pgward range this version does not satisfy (PGWARD_ERR_PLUGIN_VERSION)', async () => {
    const dir = await caseDir();
    bridge.order.length = 0;
    await writeFile(join(dir, 'future.mjs'), pluginSource({ name: 'future', pgward: '>=99.0.0' }));
    await assert.rejects(load(['./future.mjs'], dir, '0.1.0').loading, pluginError('PGWARD_ERR_PLUGIN_VERSION', 'future', /needs pgward >=99\.0\.0, this is 0\.1\.0/));
    assert.deepEqual(bridge.order, [], 'setup did not run');
  });

  it('refuses a plugin that needs another plugin API version (PGWARD_ERR_PLUGIN_API), whatever its pgward range says', async () => {
    const dir = await caseDir();
    bridge.order.length = 0;
    await writeFile(join(dir, 'next.mjs'), pluginSource({ name: 'next', pgward: '>=0.1', pluginApi: PLUGIN_API_VERSION + 1 }));
    await assert.rejects(
      load(['./next.mjs'], dir, '0.1.0').loading,
      pluginError('PGWARD_ERR_PLUGIN_API', 'next', new RegExp(`needs plugin API ${PLUGIN_API_VERSION + 1}, pgward 0\\.1\\.0 offers plugin API ${PLUGIN_API_VERSION}$`)),
    );
    await writeFile(join(dir, 'old.mjs'), pluginSource({ name: 'old', pluginApi: '>=2 <4' }));
    await assert.rejects(load(['./old.mjs'], dir).loading, pluginError('PGWARD_ERR_PLUGIN_API', 'old', /needs plugin API >=2 <4/));
    assert.deepEqual(bridge.order, [], 'setup did not run');
  });

  it('accepts a plugin API version or range this pgward offers, and checks the pgward range apart', async () => {
    const dir = await caseDir();
    let seen: number | undefined;
    bridge.setups.set('exact', (api) => void (seen = api.apiVersion));
    await writeFile(join(dir, 'exact.mjs'), pluginSource({ name: 'exact', pluginApi: PLUGIN_API_VERSION }));
    await writeFile(join(dir, 'range.mjs'), pluginSource({ name: 'range', pluginApi: `${PLUGIN_API_VERSION} || ${PLUGIN_API_VERSION + 1}` }));
    await writeFile(join(dir, 'open.mjs'), pluginSource({ name: 'open', pluginApi: '>=1' }));
    const loaded = await load(['./exact.mjs', './range.mjs', './open.mjs'], dir).loading;
    assert.deepEqual(loaded.plugins.map((p) => p.name), ['exact', 'range', 'open']);
    assert.equal(seen, PLUGIN_API_VERSION, 'setup sees the API version');
    await writeFile(join(dir, 'oldpgward.mjs'), pluginSource({ name: 'oldpgward', pgward: '<0.1', pluginApi: PLUGIN_API_VERSION }));
    await assert.rejects(load(['./oldpgward.mjs'], dir, '0.1.0').loading, pluginError('PGWARD_ERR_PLUGIN_VERSION', 'oldpgward'));
  });

  it('accepts a satisfied range, also for a pre-release pgward version', async () => {
    const dir = await caseDir();
    await writeFile(join(dir, 'ok.mjs'), pluginSource({ name: 'ok', pgward: '>=0.1 <1' }));
    await writeFile(join(dir, 'caret.mjs'), pluginSource({ name: 'caret', pgward: '^0.2.0' }));
    const loaded = await load(['./ok.mjs', './caret.mjs'], dir, '0.2.0-dev.3').loading;
    assert.deepEqual(loaded.plugins.map((p) => p.name), ['ok', 'caret']);
  });

  it('refuses a missing dependency (PGWARD_ERR_PLUGIN_DEPENDENCY)', async () => {
    const dir = await caseDir();
    await writeFile(join(dir, 'needy.mjs'), pluginSource({ name: 'needy', dependencies: ['base'] }));
    await assert.rejects(load(['./needy.mjs'], dir).loading, pluginError('PGWARD_ERR_PLUGIN_DEPENDENCY', 'needy', /depends on "base"/));
  });

  it('refuses a dependency listed after its dependent (PGWARD_ERR_PLUGIN_DEPENDENCY) and accepts the right order', async () => {
    const dir = await caseDir();
    await writeFile(join(dir, 'base.mjs'), pluginSource({ name: 'base' }));
    await writeFile(join(dir, 'needy.mjs'), pluginSource({ name: 'needy', dependencies: ['base'] }));
    await assert.rejects(load(['./needy.mjs', './base.mjs'], dir).loading, pluginError('PGWARD_ERR_PLUGIN_DEPENDENCY', 'needy', /must be listed \(and load\) before it/));
    const loaded = await load(['./base.mjs', './needy.mjs'], dir).loading;
    assert.deepEqual(loaded.plugins.map((p) => p.name), ['base', 'needy']);
  });
});

describe('plugin loader: setup and registration', () => {
  it('makes registered middleware and auth providers available under their names, with the plugin that owns them', async () => {
    const dir = await caseDir();
    await writeFile(join(dir, 'reg.mjs'), pluginSource({ name: 'reg' }));
    bridge.setups.set('reg', (api) => {
      assert.equal(api.version, '0.1.0');
      api.registerMiddleware('reg-mw', () => ({ name: 'reg-mw' }));
      api.registerAuthProvider('reg-auth', () => ({ name: 'reg-auth', authenticate: () => Promise.reject(new Error('unused')) }));
    });
    try {
      const loaded = await load(['./reg.mjs'], dir).loading;
      assert.equal(loaded.middleware.get('reg-mw')?.plugin, 'reg');
      assert.equal(loaded.middleware.get('reg-mw')?.factory({}).name, 'reg-mw');
      assert.equal(loaded.authProviders.get('reg-auth')?.plugin, 'reg');
    } finally {
      bridge.setups.delete('reg');
    }
  });

  it('wraps a throwing setup (PGWARD_ERR_PLUGIN_SETUP) and keeps the cause', async () => {
    const dir = await caseDir();
    await writeFile(join(dir, 'bad.mjs'), pluginSource({ name: 'bad-setup' }));
    const cause = new Error('cannot read my config');
    bridge.setups.set('bad-setup', () => {
      throw cause;
    });
    try {
      await assert.rejects(load(['./bad.mjs'], dir).loading, (err: unknown) => {
        pluginError('PGWARD_ERR_PLUGIN_SETUP', 'bad-setup', /setup failed: cannot read my config/)(err);
        assert.equal((err as Error).cause, cause);
        return true;
      });
    } finally {
      bridge.setups.delete('bad-setup');
    }
  });

  it('wraps a rejected async setup (PGWARD_ERR_PLUGIN_SETUP)', async () => {
    const dir = await caseDir();
    await writeFile(join(dir, 'async.mjs'), pluginSource({ name: 'async-setup' }));
    bridge.setups.set('async-setup', async () => {
      await new Promise((r) => setTimeout(r, 5));
      throw new Error('late failure');
    });
    try {
      await assert.rejects(load(['./async.mjs'], dir).loading, pluginError('PGWARD_ERR_PLUGIN_SETUP', 'async-setup', /late failure/));
    } finally {
      bridge.setups.delete('async-setup');
    }
  });

  const registerErrors: [string, SetupFn, RegExp][] = [
    ['an unknown hook name', (api) => api.on('onQuery' as never, (() => {}) as never), /unknown hook "onQuery"/],
    ['a hook without a function', (api) => api.on('onReady', 'later' as never), /needs a function/],
    ['an invalid middleware name', (api) => api.registerMiddleware('Not Valid', () => ({ name: 'x' })), /invalid middleware name/],
    ['a built-in middleware name', (api) => api.registerMiddleware('query-log', () => ({ name: 'query-log' })), /middleware "query-log" is already registered/],
    ['the drain-gate name', (api) => api.registerMiddleware('drain-gate', () => ({ name: 'drain-gate' })), /middleware "drain-gate" is already registered/],
    ['a built-in auth provider name', (api) => api.registerAuthProvider('jwt', () => ({}) as never), /auth provider "jwt" is already registered/],
  ];
  for (const [what, setup, message] of registerErrors) {
    it(`refuses ${what} (PGWARD_ERR_PLUGIN_REGISTER)`, async () => {
      const dir = await caseDir();
      await writeFile(join(dir, 'r.mjs'), pluginSource({ name: 'registrar' }));
      bridge.setups.set('registrar', setup);
      try {
        await assert.rejects(load(['./r.mjs'], dir).loading, pluginError('PGWARD_ERR_PLUGIN_REGISTER', 'registrar', message));
      } finally {
        bridge.setups.delete('registrar');
      }
    });
  }

  it('refuses a middleware name another plugin registered first, naming the second plugin', async () => {
    const dir = await caseDir();
    await writeFile(join(dir, 'first.mjs'), pluginSource({ name: 'first' }));
    await writeFile(join(dir, 'second.mjs'), pluginSource({ name: 'second' }));
    bridge.setups.set('first', (api) => api.registerMiddleware('shared', () => ({ name: 'shared' })));
    bridge.setups.set('second', (api) => api.registerMiddleware('shared', () => ({ name: 'shared' })));
    try {
      await assert.rejects(load(['./first.mjs', './second.mjs'], dir).loading, pluginError('PGWARD_ERR_PLUGIN_REGISTER', 'second', /"shared" is already registered/));
    } finally {
      bridge.setups.delete('first');
      bridge.setups.delete('second');
    }
  });

  it('refuses registration after setup has finished (PGWARD_ERR_PLUGIN_REGISTER)', async () => {
    const dir = await caseDir();
    await writeFile(join(dir, 'late.mjs'), pluginSource({ name: 'late' }));
    let kept: PluginApi | undefined;
    bridge.setups.set('late', (api) => {
      kept = api;
    });
    try {
      const loaded = await load(['./late.mjs'], dir).loading;
      assert.ok(kept);
      assert.throws(() => kept!.registerMiddleware('late-mw', () => ({ name: 'late-mw' })), pluginError('PGWARD_ERR_PLUGIN_REGISTER', 'late', /only possible during setup/));
      assert.throws(() => kept!.registerAuthProvider('late-auth', () => ({}) as never), pluginError('PGWARD_ERR_PLUGIN_REGISTER', 'late'));
      assert.throws(() => kept!.on('onReady', () => {}), pluginError('PGWARD_ERR_PLUGIN_REGISTER', 'late'));
      assert.equal(loaded.middleware.has('late-mw'), false);
    } finally {
      bridge.setups.delete('late');
    }
  });

  it('refuses registration from an async setup after it resolved (timer fires later)', async () => {
    const dir = await caseDir();
    await writeFile(join(dir, 'timer.mjs'), pluginSource({ name: 'timer' }));
    let lateError: unknown;
    const fired = new Promise<void>((resolve) => {
      bridge.setups.set('timer', (api) => {
        setTimeout(() => {
          try {
            api.registerMiddleware('timer-mw', () => ({ name: 'timer-mw' }));
          } catch (err) {
            lateError = err;
          }
          resolve();
        }, 10);
      });
    });
    try {
      const loaded = await load(['./timer.mjs'], dir).loading;
      await fired;
      pluginError('PGWARD_ERR_PLUGIN_REGISTER', 'timer')(lateError);
      assert.equal(loaded.middleware.has('timer-mw'), false);
    } finally {
      bridge.setups.delete('timer');
    }
  });
});
