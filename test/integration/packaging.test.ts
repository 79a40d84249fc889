// `npm pack` and an install of the tarball, as a user without the repository would: the packed
// package must carry dist/ (built by prepack) and build its native addon on install, and the
// installed `pgward` command must run.
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
    for (const must of ['bin/pgward.js', 'dist/src/cli/main.js', 'native/carrier.c', 'native/pg-protocol.h', 'native/build.mjs', 'LICENSE']) assert.ok(paths.includes(must), `the tarball has ${must}`);
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
  });
});
