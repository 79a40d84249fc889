// Replays the Dockerfile without a container runtime: each stage gets a scratch root, its COPY
// lines copy what they name (from the build context, minus .dockerignore, or from an earlier
// stage), its RUN lines run in the WORKDIR (apt-get excepted: system packages come from the host,
// which .ci/run provides), and the runtime stage's ENTRYPOINT then runs `--version` and `check`
// on the config the `docker run` example in the Dockerfile's header mounts.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));

interface Stage { name: string; root: string; cwd: string; env: Record<string, string>; entrypoint?: string[] }

/** The Dockerfile's instructions, continuation lines joined, comments dropped. */
function instructions(text: string): { op: string; args: string }[] {
  const joined = text.split('\n').filter((l) => !/^\s*#/.test(l)).join('\n').replace(/\\\n/g, ' ');
  return joined.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => {
    const [op, ...rest] = l.split(/\s+/);
    return { op: op!.toUpperCase(), args: rest.join(' ') };
  });
}

function ignoredBy(patterns: string[]): (rel: string) => boolean {
  const res = patterns.map((p) => new RegExp('^' + p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*') + '(/|$)'));
  return (rel) => res.some((r) => r.test(rel) || r.test(rel.split('/').pop()!));
}

function sh(cmd: string, cwd: string, env: Record<string, string>): void {
  const r = spawnSync('sh', ['-c', cmd], { cwd, env, encoding: 'utf8', timeout: 240_000 });
  assert.equal(r.status, 0, `RUN ${cmd}\n${r.stdout}\n${r.stderr}`);
}

/** A clean environment for the RUN lines: no npm_* variables of the `npm test` running us. */
function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('npm_')) env[k] = v;
  // The registry is reachable, but the cache (filled by the checkout's own `npm ci`) is faster.
  env.npm_config_prefer_offline = 'true';
  env.npm_config_audit = 'false';
  env.npm_config_fund = 'false';
  return env;
}

function replay(text: string, scratch: string): Map<string, Stage> {
  const ignored = ignoredBy(readFileSync(join(REPO, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#')));
  const stages = new Map<string, Stage>();
  let stage: Stage | undefined;
  for (const { op, args } of instructions(text)) {
    if (op === 'FROM') {
      const name = /\bAS\s+(\S+)/i.exec(args)?.[1] ?? `stage${stages.size}`;
      const root = join(scratch, name);
      mkdirSync(root, { recursive: true });
      stage = { name, root, cwd: root, env: baseEnv() };
      stages.set(name, stage);
      continue;
    }
    if (!stage) continue; // ARG before the first FROM
    const at = (p: string) => (p.startsWith('/') ? join(stage!.root, p) : join(stage!.cwd, p));
    if (op === 'WORKDIR') {
      stage.cwd = at(args);
      mkdirSync(stage.cwd, { recursive: true });
    } else if (op === 'ENV') {
      const [k, v] = args.split('=');
      stage.env[k!] = v!;
    } else if (op === 'COPY') {
      const words = args.split(/\s+/);
      const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
      const paths = words.filter((w) => !w.startsWith('--'));
      const dest = paths.pop()!;
      for (const src of paths) {
        const source = from ? join(stages.get(from)!.root, src) : join(REPO, src);
        assert.ok(existsSync(source), `COPY ${from ? `--from=${from} ` : ''}${src}: no such file`);
        const target = dest.endsWith('/') ? join(at(dest), src.split('/').filter(Boolean).pop()!) : at(dest);
        mkdirSync(dirname(target), { recursive: true });
        cpSync(source, target, { recursive: true, filter: (s) => from !== undefined || !ignored(relative(REPO, s)) });
      }
    } else if (op === 'RUN') {
      if (/^apt-get\b/.test(args)) continue;
      assert.doesNotMatch(args, /(^|[\s"'=])\/(?!dev\/null)[a-z]/, `RUN with an absolute path cannot be replayed: ${args}`);
      sh(args, stage.cwd, stage.env);
    } else if (op === 'ENTRYPOINT') {
      stage.entrypoint = JSON.parse(args) as string[];
    }
  }
  return stages;
}

describe('Dockerfile, replayed in scratch directories', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'pgward-docker-'));
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it('builds (with the native addon), and the runtime stage starts and accepts the example config', { timeout: 300_000 }, () => {
    const text = readFileSync(join(REPO, 'Dockerfile'), 'utf8');
    const stages = replay(text, scratch);
    const runtime = [...stages.values()].pop()!;
    assert.ok(runtime.entrypoint, 'the last stage has an ENTRYPOINT');
    assert.ok(!existsSync(join(runtime.cwd, 'node_modules', 'typescript')), 'only production dependencies in the runtime stage');
    const [cmd, ...pre] = runtime.entrypoint!;
    const run = (args: string[]) => spawnSync(cmd === 'node' ? process.execPath : cmd!, [...pre, ...args], { cwd: runtime.cwd, env: runtime.env, encoding: 'utf8', timeout: 30_000 });
    const version = run(['--version']);
    assert.equal(version.status, 0, version.stderr);
    assert.match(version.stdout, /^pgward \d+\.\d+\.\d+\n$/);

    // The `docker run` example's mounts: -v "$PWD/SRC:/etc/pgward/DST:ro".
    const etc = join(scratch, 'etc-pgward');
    const mounts = [...text.matchAll(/-v "\$PWD\/([^:]+):\/etc\/pgward\/([^:]+):ro"/g)].map((m) => ({ src: m[1]!, dst: m[2]! }));
    assert.ok(mounts.some((m) => m.dst === 'pgward.yaml'), 'the example mounts a config');
    for (const { src, dst } of mounts) {
      if (src === 'keys') {
        const k = run(['keygen', '--out', join(etc, dst)]); // what the header's first line does
        assert.equal(k.status, 0, k.stderr);
        continue;
      }
      assert.ok(existsSync(join(REPO, src)), `mounted file ${src} is in the repository`);
      mkdirSync(dirname(join(etc, dst)), { recursive: true });
      writeFileSync(join(etc, dst), readFileSync(join(REPO, src), 'utf8').replaceAll('/etc/pgward/', etc + '/'));
    }
    const check = run(['check', '--config', join(etc, 'pgward.yaml')]);
    assert.equal(check.status, 0, check.stderr);
    assert.match(check.stdout, /configuration OK/);
    assert.match(check.stdout, /relay: native for sessions/, 'the built addon is in the image');
  });
});
