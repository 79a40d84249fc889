import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RequestQueue } from '../../src/middleware/query-log-queue.js';

/** The queue's requests, oldest first, read through its own methods. */
function contents<T>(q: RequestQueue<T>): T[] {
  const out: T[] = [];
  for (let i = 0; i < q.size; i++) out.push(q.at(i)!);
  return out;
}

describe('query-log: the queue of requests in flight', () => {
  it('keeps the order of a model array through any mix of pushes, shifts and clears', () => {
    const q = new RequestQueue<number>();
    const model: number[] = [];
    let s = 7;
    const random = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
    for (let step = 0; step < 50_000; step++) {
      const r = random();
      // Long stretches of pipelining (pushes ahead of shifts) and of one request at a time.
      const pushBias = Math.floor(step / 5_000) % 2 === 0 ? 0.7 : 0.5;
      if (r < 0.001) {
        q.clear();
        model.length = 0;
      } else if (r < pushBias) {
        q.push(step);
        model.push(step);
      } else {
        q.shift();
        model.shift();
      }
      assert.equal(q.size, model.length);
      assert.equal(q.peek(), model[0]);
      if (step % 97 === 0) assert.deepEqual(contents(q), model);
    }
  });

  it('is empty after its last request is shifted, and is refilled from the start', () => {
    const q = new RequestQueue<string>();
    q.shift();
    assert.equal(q.size, 0);
    for (let round = 0; round < 3; round++) {
      q.push('a');
      q.push('b');
      assert.deepEqual(contents(q), ['a', 'b']);
      q.shift();
      assert.equal(q.peek(), 'b');
      q.shift();
      assert.equal(q.size, 0);
      assert.equal(q.peek(), undefined);
      assert.equal(q.at(0), undefined);
    }
    for (let i = 0; i < 3000; i++) q.push(String(i));
    for (let i = 0; i < 2500; i++) q.shift();
    assert.deepEqual(contents(q).slice(0, 2), ['2500', '2501']);
    assert.equal(q.size, 500);
    assert.equal(q.at(-1), undefined);
    assert.equal(q.at(500), undefined);
  });
});
