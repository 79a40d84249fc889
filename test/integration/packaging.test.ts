// `npm pack` and an install of the tarball, as a user without the repository would: the packed
// package must carry dist/ (built by prepack) and build its native addon on install, the
// installed `pgward` command must run, and a project depending on it must reach its public entry
// points (pgward/plugin, pgward/plugin/testing, pgward/embed) by name, with their types, and
// nothing else.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));

/** npm with none of the npm_* variables of the `npm test` that runs us, preferring its cache. */
function npm(args: string[], cwd: string): string {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('npm_')) env[k] = v;
  Object.assign(env, { npm_config_prefer_offline: 'true', npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' });
  const r = spawnSync('npm', args, { cwd, env, encoding: 'utf8', timeout: 240_000 });
  assert.equal(r.status, 0, `npm ${args.join(' ')}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/**
 * A project with the installed package in its node_modules: check.mjs imports every public entry
 * point by name, runs the shipped deny-statements plugin on the test kit, and tries an internal
 * path; plugin.ts is a TypeScript plugin with a test, type-checked against the package.
 */
function consumerOf(installed: string, dir: string): string {
  mkdirSync(join(dir, 'node_modules'), { recursive: true });
  symlinkSync(installed, join(dir, 'node_modules', 'pgward'), 'dir');
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  writeFileSync(
    join(dir, 'check.mjs'),
    `import * as root from 'pgward';
import * as plugin from 'pgward/plugin';
import * as testing from 'pgward/plugin/testing';
import * as embed from 'pgward/embed';
const deny = (await import(new URL('./node_modules/pgward/dist/plugins/deny-statements/index.js', import.meta.url))).default;
const plugins = await testing.loadTestPlugins(deny);
const s = await testing.startTestSession(plugins.middleware('deny-statements', { pattern: '^drop' }));
s.client.send(plugin.fe.query('drop table t'), plugin.fe.query('select 1'));
let internals = 'imported';
try {
  await import('pgward/dist/src/pipeline/chain.js');
} catch (err) {
  internals = err.code;
}
console.log(JSON.stringify({
  apiVersion: plugin.PLUGIN_API_VERSION,
  rootIsPlugin: root.definePlugin === plugin.definePlugin && root.splitStatements === plugin.splitStatements,
  pluginHasNoStartProxy: !('startProxy' in plugin) && !('startProxy' in testing),
  embed: Object.keys(embed).sort(),
  kit: { toBackend: s.backend.received.map((m) => m.type), toClient: s.client.received.map((m) => m.type) },
  internals,
}));
`,
  );
  writeFileSync(
    join(dir, 'plugin.ts'),
    `import { definePlugin, fe, PLUGIN_API_VERSION, splitStatements, type Middleware } from 'pgward/plugin';
import { startTestSession } from 'pgward/plugin/testing';
import type { RunningProxy } from 'pgward/embed';

const countStatements: Middleware = {
  name: 'count-statements',
  session: (ctx) => ({
    frontend: (messages) => messages,
    onClose: () => ctx.log.info('statements', { n: splitStatements('select 1; select 2').length }),
  }),
};
export default definePlugin({ name: 'count', version: '1.0.0', pluginApi: PLUGIN_API_VERSION, setup: (api) => api.registerMiddleware('count', () => countStatements) });

export async function check(): Promise<number> {
  const s = await startTestSession(countStatements, { serverParams: { standard_conforming_strings: 'on' } });
  s.client.send(fe.query('select 1'));
  return s.backend.received.length;
}
export type Proxy = RunningProxy;
`,
  );
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, noEmit: true, skipLibCheck: true, types: ['node'], typeRoots: [join(REPO, 'node_modules', '@types')] },
      files: ['plugin.ts'],
    }),
  );
  return dir;
}

describe('npm pack, installed from the tarball', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'pgward-pack-'));
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it('the installed pgward runs --version and check', { timeout: 300_000 }, () => {
    // A copy of the checkout (what git would hand out: no dist/, no built addon), so that
    // prepack's build does not rewrite the dist/ other tests are running from.
    const src = join(scratch, 'src');
    const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], { cwd: REPO, encoding: 'utf8' }).split('\0').filter(Boolean);
    for (const f of files) {
      if (!existsSync(join(REPO, f))) continue; // deleted in the work tree
      mkdirSync(dirname(join(src, f)), { recursive: true });
      cpSync(join(REPO, f), join(src, f));
    }
    symlinkSync(join(REPO, 'node_modules'), join(src, 'node_modules'), 'dir');
    const packed = npm(['pack', '--json', '--pack-destination', scratch], src);
    const [info] = JSON.parse(packed.slice(packed.indexOf('['))) as { filename: string; files: { path: string }[] }[];
    const paths = info!.files.map((f) => f.path);
    for (const must of ['bin/pgward.js', 'dist/src/cli/main.js', 'dist/src/index.d.ts', 'dist/src/testing.js', 'dist/src/embed.js', 'dist/plugins/deny-statements/index.js', 'native/relay.c', 'native/build.mjs', 'LICENSE']) assert.ok(paths.includes(must), `the tarball has ${must}`);
    assert.ok(!paths.some((p) => p.startsWith('dist/test/') || p.startsWith('native/build/')), 'no tests or build output of this machine');

    const prefix = join(scratch, 'prefix');
    npm(['install', '--global', '--prefix', prefix, join(scratch, info!.filename)], scratch);
    const bin = join(prefix, 'bin', 'pgward');
    const run = (args: string[]) => spawnSync(bin, args, { cwd: scratch, encoding: 'utf8', timeout: 30_000 });
    const version = run(['--version']);
    assert.equal(version.status, 0, version.stderr);
    assert.match(version.stdout, /^pgward \d+\.\d+\.\d+\n$/);
    const keys = join(scratch, 'keys');
    assert.equal(run(['keygen', '--out', keys]).status, 0);
    writeFileSync(join(scratch, 'backends.yaml'), 'alice: postgres://alice@db.internal:5432/app?sslmode=disable\n');
    const check = run(['check', '--insecure', '--signingKeys', join(keys, 'jwks.json'), '--backends', join(scratch, 'backends.yaml')]);
    assert.equal(check.status, 0, check.stderr);
    assert.match(check.stdout, /configuration OK/);
    const installed = join(prefix, 'lib', 'node_modules', 'pgward');
    assert.ok(readdirSync(join(installed, 'native', 'build', 'Release')).includes('pgward_relay.node'), 'install built the native addon');

    const consumer = consumerOf(installed, join(scratch, 'consumer'));
    const imported = spawnSync(process.execPath, ['check.mjs'], { cwd: consumer, encoding: 'utf8', timeout: 60_000 });
    assert.equal(imported.status, 0, imported.stderr);
    assert.deepEqual(JSON.parse(imported.stdout), {
      apiVersion: 1,
      rootIsPlugin: true,
      pluginHasNoStartProxy: true,
      embed: ['ConfigError', 'buildProxyConfig', 'pgwardVersion', 'startProxy'],
      kit: { toBackend: ['Query'], toClient: ['ErrorResponse', 'ReadyForQuery'] },
      internals: 'ERR_PACKAGE_PATH_NOT_EXPORTED',
    });
    // The declarations ship too: a TypeScript plugin and its test type-check against the package.
    const tsc = spawnSync(process.execPath, [join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', consumer], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(tsc.status, 0, `${tsc.stdout}\n${tsc.stderr}`);
  });
});
