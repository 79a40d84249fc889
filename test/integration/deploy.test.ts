// The service definitions under deploy/ (Kubernetes manifests, systemd unit): they parse, they
// fit together (probes, grace periods, selectors), and `pgward check` accepts the configuration
// they run, with the files they mount made on the fly.
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { parseDuration } from '../../src/util/duration.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = join(REPO, 'bin', 'pgward.js');
const cleanEnv = () => Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PGWARD_')));
const pgward = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 30_000, env: cleanEnv() });

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe('deploy/: Kubernetes and systemd', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'pgward-deploy-'));
  let server: Server | undefined;
  after(() => {
    server?.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('kubernetes/pgward.yaml: parses, fits together, and pgward check accepts its config', async () => {
    const docs = parseAllDocuments(readFileSync(join(REPO, 'deploy/kubernetes/pgward.yaml'), 'utf8')).map((d) => {
      assert.equal(d.errors.length, 0, String(d.errors[0]));
      return d.toJS() as Obj;
    });
    const kind = (k: string) => docs.filter((d) => d.kind === k);
    for (const k of ['ConfigMap', 'Secret', 'Deployment', 'Service', 'PodDisruptionBudget']) assert.equal(kind(k).length >= 1, true, `a ${k}`);
    const deployment = kind('Deployment')[0]!;
    const pod = deployment.spec.template.spec as Obj;
    const container = pod.containers[0] as Obj;
    assert.equal(container.readinessProbe.httpGet.path, '/ready');
    assert.equal(container.livenessProbe.httpGet.path, '/health');
    const config = kind('ConfigMap')[0]!.data['pgward.yaml'] as string;
    const grace = parseDuration(/^gracePeriod: (\S+)$/m.exec(config)![1]!) / 1000;
    const preStop = Number(container.lifecycle.preStop.exec.command.at(-1));
    assert.ok(pod.terminationGracePeriodSeconds >= grace + preStop, 'the pod outlives the drain and the preStop sleep');
    const labels = deployment.spec.template.metadata.labels as Obj;
    for (const sel of [kind('Service')[0]!.spec.selector, kind('PodDisruptionBudget')[0]!.spec.selector.matchLabels] as Obj[]) {
      for (const [k, v] of Object.entries(sel)) assert.equal(labels[k], v, 'selectors match the pods');
    }

    // The mounts, in a scratch /etc/pgward: config, the backends Secret, a TLS Secret.
    const etc = join(scratch, 'etc-pgward');
    const local = (text: string) => text.replaceAll('/etc/pgward/', etc + '/');
    const mountOf = (vol: string) => (container.volumeMounts as Obj[]).find((m) => m.name === vol)!.mountPath as string;
    mkdirSync(local(mountOf('backends')), { recursive: true });
    for (const [name, text] of Object.entries(kind('Secret')[0]!.stringData as Obj)) writeFileSync(join(local(mountOf('backends')), name), text as string);
    const tls = local(mountOf('tls'));
    mkdirSync(tls, { recursive: true });
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=pgward', '-keyout', join(tls, 'tls.key'), '-out', join(tls, 'tls.crt')], { stdio: 'ignore' });
    // The identity provider: a local discovery document and JWKS in place of the example's URL.
    assert.equal(pgward(['keygen', '--out', join(scratch, 'keys')]).status, 0);
    const jwks = readFileSync(join(scratch, 'keys', 'jwks.json'), 'utf8');
    server = createServer((req, res) => {
      const port = (server!.address() as { port: number }).port;
      res.setHeader('content-type', 'application/json');
      res.end(req.url === '/jwks.json' ? jwks : JSON.stringify({ issuer: 'https://issuer.example.com', jwks_uri: `http://127.0.0.1:${port}/jwks.json` }));
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const file = local(mountOf('config'));
    writeFileSync(file, local(config).replace(/^oidcDiscovery: \S+$/m, `oidcDiscovery: http://127.0.0.1:${port}/.well-known/openid-configuration`));
    const args = (container.args as string[]).map(local);
    assert.equal(args[0], 'start');
    // Asynchronously: the discovery server above runs in this process.
    const check = await new Promise<{ status: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [BIN, 'check', ...args.slice(1)], { encoding: 'utf8', timeout: 30_000, env: cleanEnv() }, (err, stdout, stderr) =>
        resolve({ status: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
    assert.equal(check.status, 0, check.stderr);
    assert.match(check.stdout, /configuration OK/);
  });

  it('systemd/pgward.service: Restart=, Type=simple (no sd_notify), and its ExecStart flags exist', () => {
    const unit = readFileSync(join(REPO, 'deploy/systemd/pgward.service'), 'utf8');
    const key = (k: string) => new RegExp(`^${k}=(.*)$`, 'm').exec(unit)?.[1];
    assert.equal(key('Type'), 'simple');
    assert.match(key('Restart') ?? '', /^(on-failure|always)$/);
    assert.ok(parseDuration(key('TimeoutStopSec')!) > parseDuration('30s'), 'the stop timeout is above the default gracePeriod');
    const exec = key('ExecStart')!.split(/\s+/);
    const start = exec.indexOf('start');
    assert.equal(exec[start - 1], 'pgward');
    // The flags it passes parse (`check --help`-free run: an unknown flag would be exit 2 with "unknown flag").
    const r = pgward(['check', ...exec.slice(start + 1)]);
    assert.doesNotMatch(r.stderr, /unknown flag/);
  });
});
