import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BoundedMemo } from '../../src/util/bounded-memo.js';

describe('BoundedMemo', () => {
  it('makes a value once per key and hands back the kept one after', () => {
    const memo = new BoundedMemo<string, { n: number }>(4);
    let made = 0;
    const make = (k: string) => ({ n: (made++, k.length) });
    const first = memo.get('abc', make);
    assert.equal(memo.get('abc', make), first);
    assert.equal(made, 1);
  });

  it('keeps an undefined result too (made once, not again at every call)', () => {
    const memo = new BoundedMemo<string, string | undefined>(4);
    let made = 0;
    for (let i = 0; i < 3; i++) assert.equal(memo.get('k', () => (made++, undefined)), undefined);
    assert.equal(made, 1);
  });

  it('holds at most its bound, letting the oldest entry go first', () => {
    const memo = new BoundedMemo<number, number>(3);
    let made = 0;
    const make = (k: number) => (made++, k * 10);
    for (const k of [1, 2, 3, 4]) memo.get(k, make);
    assert.equal(memo.size, 3);
    assert.equal(made, 4);
    memo.get(4, make);
    memo.get(2, make);
    assert.equal(made, 4, '2, 3 and 4 are still kept');
    memo.get(1, make);
    assert.equal(made, 5, '1 went first, so it is made again');
  });

  it('forgets everything at clear', () => {
    const memo = new BoundedMemo<string, number>(3);
    memo.get('a', () => 1);
    memo.clear();
    assert.equal(memo.size, 0);
    assert.equal(memo.get('a', () => 2), 2);
  });
});
