import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { md5Response } from '../../src/backend/md5.js';

const md5hex = (data: Buffer | string) => createHash('md5').update(data).digest('hex');

describe('md5Response', () => {
  it('matches literal vectors computed with md5sum', () => {
    // inner=$(printf '%s' 'hunter2alice' | md5sum)   → f1d6e2da5767fddc60c941cf0fa924cf
    // printf '%s\x01\x02\x03\x04' "$inner" | md5sum  → 7f80f230474a70cd9e46eeef688e62fa
    // printf '%s\xde\xad\xbe\xef' "$inner" | md5sum  → bc9015681fbe303290efb9b3e4188f8e
    assert.equal(md5Response('alice', 'hunter2', Buffer.from([1, 2, 3, 4])), 'md57f80f230474a70cd9e46eeef688e62fa');
    assert.equal(md5Response('alice', 'hunter2', Buffer.from('deadbeef', 'hex')), 'md5bc9015681fbe303290efb9b3e4188f8e');
  });

  it('uses a stored md5 hash as the inner hash (pass-the-hash)', () => {
    const salt = Buffer.from([1, 2, 3, 4]);
    assert.equal(md5Response('alice', 'md5f1d6e2da5767fddc60c941cf0fa924cf', salt), 'md57f80f230474a70cd9e46eeef688e62fa');
    // The user name plays no part once the inner hash is given.
    assert.equal(md5Response('bob', 'md5f1d6e2da5767fddc60c941cf0fa924cf', salt), 'md57f80f230474a70cd9e46eeef688e62fa');
  });

  it('agrees with an independent computation for assorted inputs', () => {
    const cases: [string, string, Buffer][] = [
      ['postgres', 'secret', Buffer.from([0, 0, 0, 0])],
      ['ünïcödé', 'pässwörd ✓', Buffer.from([0xff, 0x00, 0x7f, 0x80])],
      ['u', '', Buffer.from([9, 8, 7, 6])],
    ];
    for (const [user, password, salt] of cases) {
      const inner = md5hex(Buffer.from(password + user, 'utf8'));
      const expected = 'md5' + md5hex(Buffer.concat([Buffer.from(inner), salt]));
      const got = md5Response(user, password, salt);
      assert.equal(got, expected);
      assert.match(got, /^md5[0-9a-f]{32}$/);
      // And the pass-the-hash form of the same password answers identically.
      assert.equal(md5Response(user, `md5${inner}`, salt), expected);
    }
  });

  it('treats only lowercase md5 + 32 hex digits as a hash', () => {
    const salt = Buffer.from([1, 2, 3, 4]);
    for (const notHash of ['MD5F1D6E2DA5767FDDC60C941CF0FA924CF', 'md5f1d6e2da5767fddc60c941cf0fa924c', 'md5f1d6e2da5767fddc60c941cf0fa924cfa', 'md5F1D6E2DA5767FDDC60C941CF0FA924CF']) {
      const inner = md5hex(Buffer.from(notHash + 'alice', 'utf8'));
      assert.equal(md5Response('alice', notHash, salt), 'md5' + md5hex(Buffer.concat([Buffer.from(inner), salt])), notHash);
    }
  });

  it('refuses a salt that is not 4 bytes', () => {
    assert.throws(() => md5Response('alice', 'hunter2', Buffer.alloc(3)), /4-byte salt/);
    assert.throws(() => md5Response('alice', 'hunter2', Buffer.alloc(5)), /4-byte salt/);
  });
});
