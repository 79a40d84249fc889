import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { commandTagOf, parseCommandTag, redactSql, splitStatements, splitStatementsRedacted, withoutComments } from '../../src/sql/text.js';

describe('command tags', () => {
  it('reads row counts from the tags that carry them', () => {
    assert.deepEqual(parseCommandTag('SELECT 5'), { command: 'SELECT', rows: 5 });
    assert.deepEqual(parseCommandTag('INSERT 0 12'), { command: 'INSERT', rows: 12 });
    for (const t of ['UPDATE', 'DELETE', 'COPY', 'FETCH', 'MOVE', 'MERGE']) {
      assert.deepEqual(parseCommandTag(`${t} 3`), { command: t, rows: 3 });
    }
    assert.deepEqual(parseCommandTag('CREATE TABLE'), { command: 'CREATE' });
    assert.deepEqual(parseCommandTag('BEGIN'), { command: 'BEGIN' });
    assert.deepEqual(parseCommandTag('SELECT'), { command: 'SELECT' });
  });

  it('reads tags the same way when they come again and again, past the bound of tags it remembers', () => {
    for (let round = 0; round < 2; round++) {
      for (let n = 0; n < 2000; n++) assert.deepEqual(commandTagOf(`INSERT 0 ${n}`), { command: 'INSERT', rows: n });
    }
    const once = commandTagOf('SELECT 1');
    assert.equal(commandTagOf('SELECT 1'), once, 'a tag seen again is read from memory');
    assert.ok(Object.isFrozen(once), 'a shared result cannot be changed by whoever holds it');
    // The public helper hands plugins an object of their own.
    const mine = parseCommandTag('SELECT 1');
    assert.notEqual(mine, once);
    mine.rows = 2;
    assert.deepEqual(commandTagOf('SELECT 1'), { command: 'SELECT', rows: 1 });
  });
});

describe('redactSql', () => {
  const cases: [string, string][] = [
    ["select * from t1 where a = 'x''y' and b = 42 and c = $1", 'select * from t1 where a = ? and b = ? and c = $1'],
    ["select E'a\\'b\\\\', e'\\x41'", 'select ?, ?'],
    ['select $$it\'s$$, $tag$ a $$ b $tag$, $_1$x$_1$', 'select ?, ?, ?'],
    ['select "Weird ""Name"" 1", "t2".c3 from "s"."t"', 'select "Weird ""Name"" 1", "t2".c3 from "s"."t"'],
    ['select 1.5e-3, .5, 0x1F, 0o17, 0b101, 1_000_000, 7., 3e10', 'select ?, ?, ?, ?, ?, ?, ?, ?'],
    ["select B'101', X'ff', N'nat', U&'d\\0061t' UESCAPE '!'", 'select ?, ?, ?, U&? UESCAPE ?'],
    ['select a1, t.col2, x$1, _9 from tab3 limit 10 offset $2', 'select a1, t.col2, x$1, _9 from tab3 limit ? offset $2'],
    ["select -1 /* 'secret' /* nested */ still */, 2 -- 'gone'\nfrom t", 'select -? , ? \nfrom t'],
    ['select x::int4[], arr[1:2], interval \'1 day\'', 'select x::int4[], arr[?:?], interval ?'],
    ["select proxy_login('eyJhbGciOiJFZERTQSJ9.e30.c2ln')", 'select proxy_login(?)'],
    ["select 'unterminated secret", 'select ?'],
    ['select "unterminated secret', 'select ?'],
    ['select $q$ unterminated secret', 'select ?'],
    ["select 'a' 'b'", 'select ? ?'],
    ['select ölçü, 名前 from täble where x = 1', 'select ölçü, 名前 from täble where x = ?'],
  ];
  for (const [input, expected] of cases) {
    it(`redacts ${JSON.stringify(input)}`, () => assert.equal(redactSql(input), expected));
  }

  it('treats backslashes as escapes in plain strings when standard_conforming_strings is off', () => {
    assert.equal(redactSql("select 'a\\' or 1=1 --'", { standardConformingStrings: false }), 'select ?');
    assert.equal(redactSql("select 'a\\', 'b'"), 'select ?, ?');
  });

  /** Literal forms with `content` inside, each escaped as the server expects. */
  const literal = (content: string, scs: boolean): fc.Arbitrary<string> =>
    fc.constantFrom(
      `'${(scs ? content : content.replaceAll('\\', '\\\\')).replaceAll("'", "''")}'`,
      `E'${content.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`,
      `e'${content.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`,
      // A dollar quote ends at the first delimiter: only when that is the closing one.
      (content + '$z$').indexOf('$z$') === content.length ? `$z$${content}$z$` : `X'00'`,
      (content + '$$').indexOf('$$') === content.length ? `$$${content}$$` : `B'1'`,
      `N'${content.replaceAll('\\', scs ? '\\' : '\\\\').replaceAll("'", "''")}'`,
      // With standard_conforming_strings off a plain literal may escape its quotes with a backslash.
      scs ? `'x'` : `'${content.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`,
    );
  /** Characters that matter to the lexer, mostly, and any other code point now and then. */
  const sqlChar = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom("'", '\\', '$', 'z', '*', '/', '-', '\n', '\r', '"', ';', 'e', 'E', ' ', '0', '.') },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
  );
  const content = fc.string({ unit: sqlChar, maxLength: 24 });
  type Tok = { text: string; out: string };
  const kept = fc
    .constantFrom('select', 'from', 't1', 'col_2', '"Quoted ""Id"" 9"', '$1', '$12', '(', ')', ',', ';', '=', '::', '+', '-', '*', '$', 'U&"x"', 'x$y')
    .map((t): Tok => ({ text: t, out: t }));
  const number = fc.constantFrom('42', '3.14', '.5', '1e10', '0x1F', '1_000', '6.02E+23').map((t): Tok => ({ text: t, out: '?' }));
  const tokens = (scs: boolean) =>
    fc.array(
      fc.oneof(
        kept,
        number,
        content.chain((c) => literal(c, scs)).map((t): Tok => ({ text: t, out: '?' })),
        content
          .filter((c) => !c.includes('*/') && !c.includes('/*') && !c.endsWith('/') && !c.endsWith('*') && !c.startsWith('/') && !c.startsWith('*'))
          .map((c): Tok => ({ text: `/*${c}*/`, out: '' })),
        content.filter((c) => !/[\n\r]/.test(c)).map((c): Tok => ({ text: `--${c}\n`, out: '\n' })),
      ),
      { maxLength: 20 },
    );

  for (const scs of [true, false]) {
    it(`fuzz (standard_conforming_strings ${scs ? 'on' : 'off'}): only literals change, and their content never shows`, () => {
      fc.assert(
        fc.property(tokens(scs), (toks) => {
          const sql = toks.map((t) => t.text).join(' ');
          const out = redactSql(sql, { standardConformingStrings: scs });
          assert.equal(out, toks.map((t) => t.out).join(' '));
        }),
        { numRuns: 2000 },
      );
    });
  }

  it('fuzz: a secret inside any literal never reaches the output', () => {
    const secretLiteral = content.chain((c) => literal(`Zq${c}Zq`, true).map((lit) => ({ lit, secret: `Zq${c}Zq` })));
    fc.assert(
      fc.property(tokens(true), secretLiteral, fc.nat(20), (toks, { lit, secret }, at) => {
        const parts = toks.map((t) => t.text);
        parts.splice(Math.min(at, parts.length), 0, lit);
        assert.ok(!redactSql(parts.join(' ')).includes(secret));
      }),
      { numRuns: 1000 },
    );
  });

  it('fuzz: never throws, and redacting twice changes nothing more', () => {
    fc.assert(
      fc.property(fc.string({ unit: sqlChar, maxLength: 80 }), (s) => {
        const once = redactSql(s);
        assert.equal(redactSql(once), once);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('splitStatementsRedacted (query-log: split and redacted in one pass)', () => {
  // Statement-shaped pieces with the characters that change how text lexes, and spaces the lexer
  // does not take for whitespace (U+00A0, U+FEFF) next to numbers, where lexing alone differs.
  const piece = fc.constantFrom(
    ';', ' ', '\n', "'", "''", '"', '$', '$$', '$a$', '$1', '--', '/*', '*/', 'E', 'e', 'N', 'x', '\\', '12', '1.5e3', '.5', '0x1F',
    'create', 'CREATE', 'function', 'begin', 'BEGIN', 'atomic', 'case', 'end', 'select', 'proxy_login', '(', ')', '\u00a0', '\ufeff', 'é', '\u212a',
  );
  for (const scs of [true, false]) {
    it(`fuzz (standard_conforming_strings ${scs ? 'on' : 'off'}): the statements of splitStatements, each redacted as redactSql alone redacts it`, () => {
      fc.assert(
        fc.property(fc.array(piece, { maxLength: 30 }), (parts) => {
          const sql = parts.join('');
          const opts = { standardConformingStrings: scs };
          const both = splitStatementsRedacted(sql, true, opts);
          assert.deepEqual(both.map((st) => st.text), splitStatements(sql, opts));
          for (const st of both) {
            if (st.redacted !== undefined) assert.equal(st.redacted, redactSql(st.text, opts).trim());
            // Left to redactSql: a statement whose trimmed ends are not token ends — trimmed of a
            // non-ASCII space, or of the end of a literal or comment left open at the input's end.
            else assert.match(sql, /[\u00a0\ufeff]|\s$/);
          }
          assert.ok(splitStatementsRedacted(sql, false, opts).every((st) => st.redacted === undefined));
        }),
        { numRuns: 5000 },
      );
    });
  }

  it('a pgbench statement, and a leading U+00A0 before a number, which is redacted alone', () => {
    assert.deepEqual(splitStatementsRedacted('SELECT abalance FROM pgbench_accounts WHERE aid = 4711;', true), [
      { text: 'SELECT abalance FROM pgbench_accounts WHERE aid = 4711', redacted: 'SELECT abalance FROM pgbench_accounts WHERE aid = ?' },
    ]);
    const [st] = splitStatementsRedacted('select 1; \u00a012', true);
    assert.equal(splitStatementsRedacted('select 1; \u00a012', true)[1]!.redacted, undefined);
    assert.equal(st!.redacted, 'select ?');
    assert.equal(redactSql('12'), '?');
  });
});

describe('splitStatements', () => {
  it('splits at top-level semicolons only and drops empty statements', () => {
    assert.deepEqual(splitStatements("select 'a;b'; select $$;$$ ;; /* ; */ select \"x;y\" -- ;\n; "), [
      "select 'a;b'",
      'select $$;$$',
      '/* ; */ select "x;y" -- ;',
    ]);
    assert.deepEqual(splitStatements(' ; -- only a comment\n'), []);
  });

  it('keeps BEGIN ATOMIC bodies (with CASE … END inside) in one statement', () => {
    const fn =
      'create function f(x int) returns int language sql begin atomic select case when x > 0 then 1 else 0 end; select 2; end';
    assert.deepEqual(splitStatements(`${fn}; select 3; begin; commit`), [fn, 'select 3', 'begin', 'commit']);
  });
});

describe('splitStatements and withoutComments: cases a regex splitter gets wrong', () => {
  it('reads $ inside identifiers as part of them, not as the start of a dollar quote', () => {
    assert.deepEqual(splitStatements('select 1 as a$b$; drop table t; select 1 as c$b$'), ['select 1 as a$b$', 'drop table t', 'select 1 as c$b$']);
  });

  it("reads name'\\' as an identifier and a literal, not as an E'' string", () => {
    assert.deepEqual(splitStatements("select name'\\'; drop table t; --'"), ["select name'\\'", 'drop table t']);
  });

  it('nests block comments as PostgreSQL does', () => {
    assert.deepEqual(splitStatements('/* a /* b */ ; drop table t; */ select 1'), ['/* a /* b */ ; drop table t; */ select 1']);
  });

  it('takes non-ASCII dollar-quote tags', () => {
    assert.deepEqual(splitStatements('select $é$; drop table t; $é$'), ['select $é$; drop table t; $é$']);
  });

  it('follows standard_conforming_strings off: a backslash escapes a quote', () => {
    const sql = "select '\\'; drop table t; --'";
    assert.deepEqual(splitStatements(sql, { standardConformingStrings: false }), [sql]);
    assert.deepEqual(splitStatements(sql), ["select '\\'", 'drop table t']);
  });

  it('withoutComments removes comments (nested ones too) and keeps words apart', () => {
    assert.equal(withoutComments('/* x */ drop/* y /* z */ */table t -- done'), 'drop table t');
    assert.equal(withoutComments("select '-- kept', $$/* kept */$$, \"/*kept*/\""), "select '-- kept', $$/* kept */$$, \"/*kept*/\"");
    assert.equal(withoutComments("select E'\\' -- kept' -- gone"), "select E'\\' -- kept'");
  });
});
