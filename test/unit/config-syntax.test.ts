import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadBackendsFile, RoutingConfigError } from '../../src/auth/routing.js';
import { loadSettings } from '../../src/config/load.js';

// Syntax errors in the files an operator edits are reported at the line and column their editor
// shows for the mistake (1-based, as editors count): the character to fix, not where the parser
// gave up — which for an unclosed quote is the line after the end of the file.

const dir = mkdtempSync(join(tmpdir(), 'pgward-syntax-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const SECRET = 'hunter2-Secret';

interface Case {
  what: string;
  file: string;
  lines: string[];
  /** line:column of the mistake, and what the message says of it. */
  at: string;
  says: RegExp;
}

const CONFIG_CASES: Case[] = [
  {
    what: 'an unclosed double quote on the last line',
    file: 'quote-last.yaml',
    lines: ['bindAddr: 127.0.0.1:13013', 'insecure: true', 'logFormat: "json'],
    at: '3:12',
    says: /a quoted string that is never closed/,
  },
  {
    what: 'an unclosed quote with settings after it',
    file: 'quote-middle.yaml',
    lines: ['insecure: true', `backend: 'postgres://app:${SECRET}@db/app`, 'auth: passthrough', 'logFormat: json'],
    at: '2:10',
    says: /a quoted string that is never closed/,
  },
  {
    what: 'a key indented deeper than the one above it',
    file: 'deeper.yaml',
    lines: ['insecure: true', 'auth:', '  provider: command', '    cmd: [/usr/local/bin/auth.py]'],
    at: '4:5',
    says: /a key indented deeper than the one above it/,
  },
  {
    what: 'a key indented less than its siblings',
    file: 'shallower.yaml',
    lines: ['insecure: true', 'auth:', '  provider: command', ' timeout: 10s'],
    at: '4:2',
    says: /bad indentation/,
  },
  {
    what: 'a duplicate key',
    file: 'dup.yaml',
    lines: ['insecure: true', 'logFormat: json', '# both set', 'insecure: false'],
    at: '4:1',
    says: /duplicate key/,
  },
  {
    what: 'a tab in the indentation',
    file: 'tab.yaml',
    lines: ['insecure: true', 'auth:', '\tprovider: command'],
    at: '3:1',
    says: /a tab used as indentation/,
  },
  {
    what: 'a list that is never closed',
    file: 'flow.yaml',
    lines: ['insecure: true', 'signingKeys: [a.pem, b.pem', 'logFormat: json'],
    at: '2:14',
    says: /a \[ that is never closed/,
  },
  {
    what: 'a line without ":"',
    file: 'colon.yaml',
    lines: ['insecure: true', 'logFormat json', 'refresh: 1h'],
    at: '2:1',
    says: /neither "key: value" nor "- item"/,
  },
  {
    what: 'Windows line ends with an unclosed quote',
    file: 'crlf.yaml',
    lines: ['insecure: true\r', 'logFormat: "json\r', 'refresh: 1h\r'],
    at: '2:12',
    says: /never closed/,
  },
  {
    what: 'a trailing comma in a .json file',
    file: 'comma.json',
    lines: ['{', '  "insecure": true,', '  "logFormat": "json",', '}'],
    at: '3:22',
    says: /invalid JSON .*a trailing comma/,
  },
  {
    what: 'a missing comma in a .json file',
    file: 'missing-comma.json',
    lines: ['{', '  "insecure": true', '  "logFormat": "json"', '}'],
    at: '2:19',
    says: /a missing "," after this value/,
  },
  {
    what: 'a comment in a .json file',
    file: 'comment.json',
    lines: ['{', '  "insecure": true,', '  // plain text for now', '  "logFormat": "text"', '}'],
    at: '3:3',
    says: /a comment; JSON has none/,
  },
  {
    what: 'an unclosed string in a .json file',
    file: 'string.json',
    lines: ['{', `  "backend": "postgres://app:${SECRET}@db/app,`, '  "auth": "passthrough"', '}'],
    at: '2:14',
    says: /a string that is not closed on its line/,
  },
  {
    what: 'a list never closed in a .json file',
    file: 'bracket.json',
    lines: ['{', '  "signingKeys": ["a.pem", "b.pem"', '}'],
    at: '2:18',
    says: /a \[ that is never closed/,
  },
  {
    what: 'a duplicate key in a .json file',
    file: 'dup.json',
    lines: ['{', '  "insecure": true,', '  "insecure": false', '}'],
    at: '3:3',
    says: /duplicate key/,
  },
];

function position(problem: string): string {
  const m = /at line (\d+), column (\d+)/.exec(problem);
  assert.ok(m, `a position in "${problem}"`);
  return `${m[1]}:${m[2]}`;
}

function write(name: string, lines: string[]): string {
  const path = join(dir, name);
  writeFileSync(path, lines.join('\n') + '\n');
  return path;
}

describe('config file syntax errors: the line and column of the mistake', () => {
  for (const c of CONFIG_CASES) {
    it(`${c.what} (${c.file}) → ${c.at}`, () => {
      const path = write(c.file, c.lines);
      const { problems } = loadSettings(['--config', path], {});
      assert.equal(problems.length, 1, problems.join('\n'));
      assert.ok(problems[0]!.startsWith(`${path}: `), problems[0]);
      assert.equal(position(problems[0]!), c.at, problems[0]);
      assert.match(problems[0]!, c.says);
      assert.ok(!problems[0]!.includes(SECRET), 'the file text is not echoed');
    });
  }

  it('a .json file with a byte-order mark and no mistake is read', () => {
    const path = join(dir, 'bom.json');
    writeFileSync(path, '\ufeff{ "insecure": true }\n');
    assert.deepEqual(loadSettings(['--config', path], {}).problems, []);
  });
});

describe('backends file syntax errors: the line and column of the mistake', () => {
  const backendCase = (name: string, lines: string[]) => {
    const path = write(name, lines);
    try {
      loadBackendsFile(path);
    } catch (err) {
      assert.ok(err instanceof RoutingConfigError, String(err));
      assert.ok(!err.message.includes(SECRET), 'the file text is not echoed');
      return err.problems;
    }
    return assert.fail('expected a RoutingConfigError');
  };

  it('an unclosed quote on the last line is reported there, not on the line after the file', () => {
    const problems = backendCase('b-quote.yaml', ['alice: postgres://alice@db/app', `bob: "postgres://bob:${SECRET}@db/app`]);
    assert.deepEqual(problems.map(position), ['2:6']);
  });

  it('an over-indented route is reported on its own line', () => {
    const problems = backendCase('b-deeper.yaml', [
      'alice:',
      '  url: postgres://alice@db/app',
      `  passwordCommand: /usr/local/bin/secret ${SECRET}`,
      '    passwordTtl: 5m',
    ]);
    assert.deepEqual(problems.map(position), ['4:5']);
  });

  it('duplicate routes are each reported where the repeat is', () => {
    const problems = backendCase('b-dup.yaml', ['alice: postgres://alice@db/a', 'bob: postgres://bob@db/b', 'alice: postgres://alice@db/c', 'bob: postgres://bob@db/d']);
    assert.deepEqual(problems.map(position), ['3:1', '4:1']);
    assert.ok(problems.every((p) => /duplicate key/.test(p)));
  });

  it('a tab and a bad indentation', () => {
    assert.deepEqual(backendCase('b-tab.yaml', ['alice:', '\turl: postgres://alice@db/app']).map(position), ['2:1']);
    assert.deepEqual(backendCase('b-indent.yaml', ['alice:', '  url: postgres://alice@db/app', ' user: app']).map(position), ['3:2']);
  });

  it('a .json backends file: trailing comma at the comma, unclosed object at its brace', () => {
    const comma = backendCase('b-comma.json', ['{', `  "alice": "postgres://alice:${SECRET}@db/app",`, '}']);
    assert.deepEqual(comma.map(position), ['2:52']);
    assert.match(comma[0]!, /a trailing comma/);
    const open = backendCase('b-open.json', ['{', '  "alice": {', '    "url": "postgres://alice@db/app"', '}']);
    assert.deepEqual(open.map(position), ['1:1']);
    assert.match(open[0]!, /a \{ that is never closed/);
  });
});
