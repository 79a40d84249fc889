import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PreparedFields } from '../../src/telemetry/log-fields.js';

const render = (k: string, v: unknown) => (v === undefined ? '' : ` ${k}=${String(v)}`);

describe('a prepared line\'s fields', () => {
  it('join as each field\'s text in turn between head and end, whichever fields change from line to line', () => {
    let s = 31;
    const random = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
    const fields = new PreparedFields('HEAD', '|END', () => true, render);
    const names = ['statement', 'params', 'duration_ms', 'rows', 'sqlstate', 'command', 'extra'];
    let values: unknown[] = names.map(() => 1);
    for (let line = 0; line < 20_000; line++) {
      // Stretches where one field changes, several do, none does, or the fields themselves do.
      const mode = Math.floor(line / 500) % 4;
      const count = mode === 3 ? 1 + Math.floor(random() * names.length) : names.length;
      values = values.map((v, i) => (mode === 0 ? (i === 2 ? random() : v) : mode === 1 ? (random() < 0.3 ? Math.floor(random() * 3) : v) : mode === 2 ? v : random() < 0.5 ? undefined : 'x'));
      const given: Record<string, unknown> = {};
      for (let i = 0; i < count; i++) given[names[i]!] = values[i];
      const expected = 'HEAD' + names.slice(0, count).map((k, i) => render(k, values[i])).join('') + '|END';
      assert.equal(fields.line(given), expected, `line ${line}`);
    }
  });

  it('gives undefined for a field not rendered here', () => {
    const fields = new PreparedFields('H', '\n', (k) => k !== 'secret', render);
    assert.equal(fields.line({ a: 1, b: 2 }), 'H a=1 b=2\n');
    assert.equal(fields.line({ a: 1, secret: 2 }), undefined);
    assert.equal(fields.line({ a: 1, b: 3 }), 'H a=1 b=3\n');
    assert.equal(fields.line({}), 'H\n');
  });
});
