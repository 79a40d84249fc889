import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/telemetry/log.js';
import { holdLines, writeHeldLines } from '../../src/telemetry/log-output.js';

// The native carrier's batches of one turn of the loop hold the log's lines and write them in one
// go before any of their answers leave (src/pipeline/carrier.ts, setBatchHooks).
describe('log lines held for a batch', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pgward-log-hold-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('are not written while held, then all written, in order, by writeHeldLines', () => {
    const file = join(dir, 'held.log');
    const a = createLogger({ format: 'text', destination: file }).child({ session: 'a' });
    const b = createLogger({ format: 'text', destination: file }).child({ session: 'b' });
    a.info('before');
    holdLines();
    try {
      for (let i = 0; i < 5; i++) (i % 2 ? b : a).info('query', { n: i });
      assert.deepEqual(readFileSync(file, 'utf8').trim().split('\n').length, 1, 'only the line from before the hold');
    } finally {
      writeHeldLines();
    }
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    const ns = lines.slice(1).map((l) => Number(/ n=(\d+)/.exec(l)?.[1]));
    // Two writers (two loggers opened the file): each writes its own lines in order.
    assert.deepEqual(ns.filter((n) => n % 2 === 0), [0, 2, 4]);
    assert.deepEqual(ns.filter((n) => n % 2 === 1), [1, 3]);
    a.info('after');
    assert.match(readFileSync(file, 'utf8').trim().split('\n').at(-1)!, / after/, 'written at once again after the hold');
    writeHeldLines(); // nothing held: does nothing
  });
});
