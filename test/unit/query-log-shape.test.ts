import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { QueryShapes } from '../../src/middleware/query-log-shape.js';
import { splitStatementsRedacted, type SplitStatement } from '../../src/sql/text.js';

/** `#` in a template becomes a random digit run (1–6 digits, sometimes a leading 0). */
function instance(template: string, random: () => number): string {
  return template.replace(/#/g, () => {
    const n = 1 + Math.floor(random() * 6);
    let run = '';
    for (let i = 0; i < n; i++) run += String(Math.floor(random() * 10));
    return run;
  });
}

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const TEMPLATES = [
  'SELECT abalance FROM pgbench_accounts WHERE aid = #;',
  'select #',
  '#',
  '  select # ; ',
  ';; select * from t# where id = #',
  'select "col #" from t where x = #',
  'select "c#x", # from t',
  "select 'a # b', # from t",
  "select E'\\\\#', # from t",
  'select 0x#, # from t',
  'select #.# + .# + #e# + #e-# + #_# from t',
  'select $#, #, $a#$ # $a#$ from t',
  'select # -- comment #\n from t',
  'select /* # /* # */ */ # from t',
  'select #; select #',
  'select ##',
  'select x#y, #x, x# from t',
  'UPDATE pgbench_accounts SET abalance = abalance + # WHERE aid = #;',
  'select proxy_login(#)',
  "select U&'\\#' , U&\"d\\#\" from t",
  'create function f() returns int begin atomic select #; end',
];

describe('query-log: query shapes', () => {
  it('gives what the full split gives, for every query of many shapes, in any order', () => {
    const random = seeded(19);
    for (const scs of [true, false]) {
      const shapes = new QueryShapes();
      let trusted = 0;
      for (let i = 0; i < 30_000; i++) {
        // Each shape many times in a row, then mostly the same few, now and then any: each is
        // learned, trusted and replaced.
        const template = TEMPLATES[i < 20 * TEMPLATES.length ? Math.floor(i / 20) : random() < 0.7 ? i % 3 : Math.floor(random() * TEMPLATES.length)]!;
        const sql = instance(template, random);
        const expected = splitStatementsRedacted(sql, true, { standardConformingStrings: scs });
        let split = false;
        const got = shapes.statements(sql, scs, () => {
          split = true;
          return splitStatementsRedacted(sql, true, { standardConformingStrings: scs });
        });
        assert.deepEqual(plain(got), plain(expected), `${JSON.stringify(sql)} (split: ${split})`);
        if (!split) trusted++;
      }
      assert.ok(trusted > 15_000, `${trusted} queries by a trusted shape`);
    }
  });

  it('is trusted only after a second query with every digit run different', () => {
    const shapes = new QueryShapes();
    let splits = 0;
    const run = (sql: string) =>
      shapes.statements(sql, true, () => {
        splits++;
        return splitStatementsRedacted(sql, true);
      });
    run('select "t 1", 2 from t');
    run('select "t 1", 3 from t'); // a run the same: not a check
    assert.equal(splits, 2);
    assert.deepEqual(plain(run('select "t 5", 4 from t')), [{ text: 'select "t 5", 4 from t', redacted: 'select "t 5", ? from t' }]);
    assert.equal(splits, 3, 'the quoted identifier shows its digits: never trusted');
    run('select "t 6", 7 from t');
    assert.equal(splits, 4);
    run('select 1 from t');
    run('select 2 from t');
    assert.equal(splits, 6);
    assert.deepEqual(plain(run('select 345 from t')), [{ text: 'select 345 from t', redacted: 'select ? from t' }]);
    assert.equal(splits, 6, 'trusted: no split');
    assert.deepEqual(plain(run('select 345 from t')), [{ text: 'select 345 from t', redacted: 'select ? from t' }]);
  });

  it('known: what make gave for a trusted shape, made once and given for each of its queries, made again for a new shape', () => {
    const shapes = new QueryShapes<{ redacted: string }>();
    let made = 0;
    const make = (redacted: string) => {
      made++;
      return { redacted };
    };
    const ask = (sql: string) => {
      const known = shapes.known(sql, true, make);
      if (!known) shapes.learn(sql, true, splitStatementsRedacted(sql, true));
      return known;
    };
    assert.equal(ask('select 1 from t'), undefined);
    assert.equal(ask('select 2 from t'), undefined, 'checked, not yet trusted');
    const first = ask('select 345 from t');
    assert.deepEqual(first, { redacted: 'select ? from t' });
    assert.equal(ask('select 6 from t'), first, 'the same object again');
    assert.equal(made, 1);
    // Eight other shapes, each learned, checked and trusted, push the first one out.
    for (let k = 0; k < 8; k++) for (const n of [1, 2]) ask(`select ${n} from t${'x'.repeat(k + 1)}`);
    assert.equal(ask('select 7 from t'), undefined, 'its slot was taken: learned anew');
    assert.equal(ask('select 8 from t'), undefined);
    const again = ask('select 9 from t');
    assert.deepEqual(again, { redacted: 'select ? from t' });
    assert.notEqual(again, first);
  });
});

function plain(pieces: readonly SplitStatement[]): { text: string; redacted: string | undefined }[] {
  return pieces.map((p) => ({ text: p.text, redacted: p.redacted }));
}
