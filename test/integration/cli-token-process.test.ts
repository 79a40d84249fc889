import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ALGS, assertOneLine, cli, readJwks, verifyBoth, freshFolders } from '../helpers/keygen-cases.js';

describe('pgward keygen / token through the CLI', () => {
  const fresh = freshFolders();

  for (const alg of ALGS) {
    it(`keygen --alg ${alg} then $(pgward token …) verifies`, async () => {
      const dir = fresh();
      const kg = await cli(['keygen', '--alg', alg, '--out', dir]);
      assert.equal(kg.code, 0, kg.stderr);
      const jwks = await readJwks(dir);
      assert.ok(kg.stdout.includes(jwks.keys[0]!.kid!));
      assert.equal((await stat(join(dir, 'private.pem'))).mode & 0o777, 0o600);

      const tk = await cli(['token', '--key', join(dir, 'private.pem'), '--sub', 'alice', '--ttl', '10m', '--claim', 'level=3']);
      assert.equal(tk.code, 0, tk.stderr);
      assert.equal(tk.stderr, '');
      assert.match(tk.stdout, /^[\w-]+\.[\w-]+\.[\w-]+\n$/, 'only the token and a newline');
      const { payload, protectedHeader } = await verifyBoth(tk.stdout.trim(), dir, alg);
      assert.equal(protectedHeader.alg, alg);
      assert.equal(protectedHeader.kid, jwks.keys[0]!.kid);
      assert.equal(payload.sub, 'alice');
      assert.equal(payload.level, 3);
      assert.equal(payload.exp! - payload.iat!, 600);
    });
  }

  it('keygen refuses to overwrite (exit 2)', async () => {
    const dir = fresh();
    assert.equal((await cli(['keygen', '--out', dir])).code, 0);
    const r = await cli(['keygen', '--out', dir]);
    assert.equal(r.code, 2);
    assertOneLine(r.stderr);
    assert.match(r.stderr, /--force/);
    assert.equal((await cli(['keygen', '--out', dir, '--force'])).code, 0);
  });

  it('bad usage exits 2 with one line; --help exits 0', async () => {
    for (const args of [
      ['keygen', '--alg', 'RS1'],
      ['keygen', '--nope'],
      ['token', '--sub', 'x'],
      ['token', '--key', join(fresh(), 'does-not-exist.pem'), '--sub', 'x'],
    ]) {
      const r = await cli(args);
      assert.equal(r.code, 2, args.join(' '));
      assert.equal(r.stdout, '');
      assertOneLine(r.stderr);
    }
    for (const cmd of ['keygen', 'token']) {
      const r = await cli([cmd, '--help']);
      assert.equal(r.code, 0);
      assert.match(r.stdout, new RegExp(`Usage: pgward ${cmd}`));
      assert.match(r.stdout, /Example/);
    }
    const top = await cli(['--help']);
    assert.match(top.stdout, /pgward keygen/);
    assert.match(top.stdout, /pgward token/);
  });
});
