import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { bindParams, cellText, plan, type ConsoleHost } from '../../src/admin/commands.js';
import { parseRevocations, RevocationStore } from '../../src/admin/revocations.js';

function host(store = new RevocationStore()): ConsoleHost & { killed: unknown[] } {
  const killed: unknown[] = [];
  return {
    killed,
    version: '1.2.3',
    sessions: () => [],
    stats: async () => [],
    revocations: store,
    kill: (w) => (killed.push(w), 1),
    enforceRevocations: () => 0,
    reload: async () => {},
  };
}

describe('admin console commands', () => {
  it('parses commands case-insensitively with a trailing semicolon and quoted literals', async () => {
    const h = host();
    assert.equal((await plan('show version;', h).run()).rows[0]![0], 'pgward 1.2.3');
    assert.equal((await plan(`kill   subject 'o''brien' ;`, h).run()).tag, 'KILL 1');
    assert.deepEqual(h.killed, [{ subject: "o'brien" }]);
    assert.equal((await plan(bindParams('KILL SESSION $1', ['abc']), h).run()).tag, 'KILL 1');
    assert.deepEqual(h.killed[1], { session: 'abc' });
  });

  it('answers anything else with 42601 listing the commands', () => {
    for (const sql of ['SELECT 1', 'SHOW CLIENTS', "KILL SESSION abc", 'SHOW VERSION; SHOW HELP']) {
      assert.throws(() => plan(sql, host()), (e: Error & { sqlstate?: string; hint?: string }) => e.sqlstate === '42601' && /KILL SUBJECT/.test(e.hint ?? ''), sql);
    }
    assert.throws(() => plan(`REVOKE SUBJECT 'a' UNTIL 'soon'`, host()), (e: Error & { sqlstate?: string }) => e.sqlstate === '22007');
  });

  it('formats cells as PostgreSQL text', () => {
    assert.equal(cellText(true, 'bool'), 't');
    assert.equal(cellText(new Date(Date.UTC(2026, 0, 2, 3, 4, 5)), 'timestamptz'), '2026-01-02 03:04:05.000+00');
    assert.equal(cellText(undefined, 'int8'), null);
  });
});

describe('revocation store', () => {
  it('refuses bad entries with their position', () => {
    assert.throws(() => parseRevocations('{}'), /expected a list/);
    assert.throws(() => parseRevocations('- reason: x'), /entry 1: needs exactly one of sub or jti/);
    assert.throws(() => parseRevocations('- sub: a\n- sub: b\n  jti: c'), /entry 2/);
    assert.throws(() => parseRevocations('- sub: a\n  until: not-a-date'), /until is not a timestamp/);
    assert.deepEqual(parseRevocations(''), []);
  });

  it('matches by sub or jti while until is ahead, and drops entries past it', () => {
    let now = 1000;
    const s = new RevocationStore(undefined, () => now);
    s.add({ kind: 'sub', value: 'alice', until: 2000 });
    s.add({ kind: 'jti', value: 't1' });
    assert.ok(s.match('alice', undefined));
    assert.ok(s.match('bob', 't1'));
    assert.equal(s.match('bob', 't2'), undefined);
    now = 2000;
    assert.equal(s.match('alice', undefined), undefined);
    assert.equal(s.size, 1);
  });

  it('writes the file atomically and reads it back', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pgward-rev-'));
    try {
      const path = join(dir, 'r.yaml');
      const a = new RevocationStore(path);
      a.add({ kind: 'sub', value: 'alice', reason: 'why' });
      assert.deepEqual(await readdir(dir), ['r.yaml'], 'no temp file left');
      const b = new RevocationStore(path);
      b.load();
      assert.deepEqual(b.list(), [{ kind: 'sub', value: 'alice', until: undefined, reason: 'why' }]);
      assert.ok(b.remove('sub', 'alice'));
      assert.deepEqual(JSON.parse(await readFile(path, 'utf8')), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
