import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  RouteSubstitutionError,
  RoutingConfigError,
  loadBackendsFile,
  parseBackends,
  type RouteContext,
} from '../../src/auth/routing.js';
import { PgError } from '../../src/protocol/errors.js';

const SECRET = 'Sup3rS3cretPw';
const ctx = (claims: Record<string, unknown> = {}, startupUser = 'alice', startupDatabase?: string): RouteContext => ({
  claims,
  startupUser,
  ...(startupDatabase !== undefined ? { startupDatabase } : {}),
});

function configFails(doc: unknown, ...patterns: RegExp[]): RoutingConfigError {
  let caught: unknown;
  try {
    parseBackends(doc, 'backends.yaml');
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof RoutingConfigError, `expected a RoutingConfigError, got ${String(caught)}`);
  const all = caught.problems.join('\n');
  for (const p of patterns) assert.match(all, p);
  assert.ok(!all.includes(SECRET) && !caught.message.includes(SECRET), `a password leaks: ${all}`);
  return caught;
}

/** Asserts that a match throws RouteSubstitutionError (28000) naming neither secrets nor `hidden`. */
function substitutionFails(run: () => unknown, problem: RegExp, ...hidden: string[]): RouteSubstitutionError {
  let caught: unknown;
  try {
    run();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof RouteSubstitutionError, `expected a RouteSubstitutionError, got ${String(caught)}`);
  assert.ok(caught instanceof PgError);
  assert.equal(caught.sqlstate, '28000');
  assert.equal(caught.severity, 'FATAL');
  assert.match(caught.problem, problem);
  const shown = `${caught.message}\n${caught.problem}\n${caught.detail ?? ''}`;
  for (const h of [SECRET, ...hidden]) assert.ok(!shown.includes(h), `the error shows ${JSON.stringify(h)}: ${shown}`);
  return caught;
}

describe('parseBackends: precedence', () => {
  const routes = parseBackends(
    {
      'alice@example.com': `postgres://app:${SECRET}@db1:5432/app?sslmode=require`,
      '/^(.*)@example\\.com$/': 'postgres://$1@db2:5432/$1?sslmode=require',
      '/^(?<team>[a-z]+)-bot$/i': 'postgres://bots@db3/${team}',
      '/admin/': 'postgres://admins@db4/admin',
      '*': 'postgres://readonly:ro@db5:5432/public',
    },
    'backends.json',
  );

  it('prefers an exact key over a regex', () => {
    const m = routes.match('alice@example.com', ctx())!;
    assert.equal(m.key, 'alice@example.com');
    assert.equal(m.target.host, 'db1');
    assert.equal(m.target.user, 'app');
    assert.equal(m.target.password, SECRET);
    assert.equal(m.passwordCommand, undefined);
  });

  it('tries regexes in file order and substitutes $1 and ${name}', () => {
    const bob = routes.match('bob@example.com', ctx())!;
    assert.equal(bob.key, '/^(.*)@example\\.com$/');
    assert.deepEqual([bob.target.host, bob.target.user, bob.target.database, bob.target.sslmode], ['db2', 'bob', 'bob', 'require']);
    const bot = routes.match('Build-BOT', ctx())!;
    assert.equal(bot.target.host, 'db3');
    assert.equal(bot.target.database, 'Build');
  });

  it('does not anchor a regex its author did not anchor', () => {
    assert.equal(routes.match('superadministrator', ctx())!.key, '/admin/');
    // The anchored one needs the whole value.
    assert.equal(routes.match('bob@example.com.evil', ctx())!.key, '*');
  });

  it('falls back to *, or to nothing', () => {
    assert.equal(routes.match('nobody', ctx())!.target.host, 'db5');
    const noFallback = parseBackends({ a: 'postgres://u@h/d' }, 'b.yaml');
    assert.equal(noFallback.match('b', ctx()), undefined);
    assert.equal(noFallback.match('__proto__', ctx()), undefined);
    assert.equal(noFallback.match('constructor', ctx()), undefined);
  });

  it('returns a fresh target per match', () => {
    const a = routes.match('nobody', ctx())!;
    a.target.host = 'changed';
    assert.equal(routes.match('nobody', ctx())!.target.host, 'db5');
  });

  it('describes routes without passwords', () => {
    const lines = routes.describe();
    assert.equal(lines.length, 5);
    assert.ok(lines[0]!.startsWith('exact "alice@example.com"'));
    assert.ok(lines.at(-1)!.startsWith('fallback "*"'));
    assert.ok(!lines.join('\n').includes(SECRET));
    assert.ok(!lines.join('\n').includes(':ro@'));
  });
});

describe('parseBackends: templates', () => {
  it('applies user, database, options and application_name templates', () => {
    const routes = parseBackends(
      {
        '/^(?<name>[a-z]+)@corp\\.example$/': {
          url: 'postgres://svc@db:5432/main?sslmode=disable',
          user: '{claim.preferred_username}',
          database: 'tenant_{claim.tenant}',
          options: '-c search_path={claim.tenant},public -c statement_timeout=5s',
          application_name: 'pgward:${name}:{startup.user}',
        },
        analyst: {
          url: 'postgres://analyst@rds:5432/dw',
          database: '{startup.database}',
          passwordCommand: "printf '%s' 'token-from-command'",
          passwordTtl: '10m',
        },
      },
      'backends.yaml',
    );
    const m = routes.match('carol@corp.example', ctx({ preferred_username: 'carol.c', tenant: 'acme' }, 'carol.c'))!;
    assert.equal(m.target.user, 'carol.c');
    assert.equal(m.target.database, 'tenant_acme');
    assert.equal(m.target.options, '-c search_path=acme,public -c statement_timeout=5s');
    assert.equal(m.target.applicationName, 'pgward:carol:carol.c');

    const a1 = routes.match('analyst', ctx({}, 'analyst', 'sales'))!;
    assert.equal(a1.target.database, 'sales');
    // {startup.database} defaults to the user name, as in PostgreSQL.
    assert.equal(routes.match('analyst', ctx({}, 'analyst'))!.target.database, 'analyst');
    const a2 = routes.match('analyst', ctx({}, 'analyst'))!;
    assert.ok(a1.passwordCommand);
    assert.equal(a1.passwordCommand, a2.passwordCommand, 'one cached command per route key');
  });

  it('runs the password command without a shell and caches it', async () => {
    const routes = parseBackends({ x: { url: 'postgres://u@h/d', passwordCommand: ['node', '-e', 'process.stdout.write(String(Date.now()) + "$HOME;")'] } }, 'b.yaml');
    const cmd = routes.match('x', ctx())!.passwordCommand!;
    const first = await cmd.get();
    assert.match(first, /^\d+\$HOME;$/, 'no shell expansion');
    assert.equal(await cmd.get(), first);
  });

  it('substitutes claims into URLs, encoding them where they land', () => {
    const routes = parseBackends(
      {
        '*': 'postgres://{claim.team}@{claim.shard}.db.internal:5432/{claim.db}?application_name={claim.app}&search_path={claim.schema}',
      },
      'b.yaml',
    );
    const m = routes.match('x', ctx({ team: 'blue_team', shard: 'eu-1', db: 'my db/1?', app: 'a&b=c', schema: 's1' }))!;
    assert.equal(m.target.user, 'blue_team');
    assert.equal(m.target.host, 'eu-1.db.internal');
    assert.equal(m.target.database, 'my db/1?', 'the path value is percent-encoded, so it stays the database name');
    assert.equal(m.target.applicationName, 'a&b=c');
    assert.deepEqual(m.target.params, { search_path: 's1' });
    assert.equal(m.target.sslmode, 'prefer');
  });

  it('treats $ literally outside regex routes, and $$ as $ in regex routes', () => {
    const routes = parseBackends({ a: 'postgres://u:pa$1w@h/d', '/^b$/': 'postgres://u:pa$$1w@h/d' }, 'b.yaml');
    assert.equal(routes.match('a', ctx())!.target.password, 'pa$1w');
    assert.equal(routes.match('b', ctx())!.target.password, 'pa$1w');
  });
});

describe('parseBackends: injection through claims is refused', () => {
  const routes = parseBackends(
    {
      '/^(.*)@example\\.com$/': 'postgres://$1@db2:5432/$1?sslmode=verify-full&sslrootcert=ca.pem',
      '/^host:(.*)$/': 'postgres://app@$1:5432/app',
      '/^port:(.*)$/': 'postgres://app@db:$1/app',
      '/^opt:(.*)$/': { url: 'postgres://app@db/app', options: '-c search_path=$1' },
      '/^uopt:(.*)$/': 'postgres://app@db/app?options=-c%20search_path%3D$1',
      '/^leadopt:(.*)$/': { url: 'postgres://app@db/app', options: '$1' },
      '/^pw:(.*)$/': 'postgres://app:$1@db/app',
      '/^app:(.*)$/': { url: 'postgres://app@db/app', application_name: '$1', user: '{claim.name}' },
      '/^s:(.*)$/s': { url: 'postgres://$1@db/app', application_name: '$1' },
    },
    'backends.yaml',
  );

  it('claim "a@b/evil?sslmode=disable" cannot add URL parts or query keys', () => {
    const evil = 'a@b/evil?sslmode=disable';
    substitutionFails(() => routes.match(`${evil}@example.com`, ctx()), /capture group.*user name/, evil);
    substitutionFails(() => routes.match(`host:${evil}`, ctx()), /host name/, evil);
    substitutionFails(() => routes.match('host:db#x', ctx()), /host name/);
    substitutionFails(() => routes.match('host:db:5433', ctx()), /host name/);
    substitutionFails(() => routes.match('port:5432/x', ctx()), /port/);
    // In a password the value is encoded and stays a password.
    const m = routes.match(`pw:${evil}`, ctx())!;
    assert.equal(m.target.password, evil);
    assert.equal(m.target.host, 'db');
    assert.equal(m.target.sslmode, 'prefer');
    assert.deepEqual(m.target.params, {});
  });

  it('refuses newlines and other control characters', () => {
    // Without the s flag, "." stops at a newline: no match at all.
    assert.equal(routes.match('bob\n@example.com', ctx()), undefined);
    substitutionFails(() => routes.match('s:bob\nx', ctx()), /capture group 1 contains a control character/);
    substitutionFails(() => routes.match('s:x\r\nSET role admin', ctx()), /control character/);
    substitutionFails(() => routes.match('app:x', ctx({ name: 'u\u0000admin' })), /claim "name" contains a control character/);
    substitutionFails(() => routes.match('s:a\u2028b', ctx()), /control character/);
  });

  it('refuses -c injection through options', () => {
    substitutionFails(() => routes.match('opt:public -c statement_timeout=0', ctx()), /whitespace or a backslash/);
    substitutionFails(() => routes.match('opt:public\\ -c\\ x=1', ctx()), /whitespace or a backslash/);
    substitutionFails(() => routes.match('opt:public\t-cx=1', ctx()), /control character|whitespace/);
    substitutionFails(() => routes.match('uopt:public -c role=admin', ctx()), /whitespace or a backslash/);
    substitutionFails(() => routes.match('leadopt:-crole=admin', ctx()), /starts with "-"/);
    assert.equal(routes.match('opt:tenant_1', ctx())!.target.options, '-c search_path=tenant_1');
    assert.equal(routes.match('uopt:tenant_1', ctx())!.target.options, '-c search_path=tenant_1');
  });

  it('refuses values over 256 characters and non-string claims', () => {
    const long = 'x'.repeat(300);
    substitutionFails(() => routes.match(`${long}@example.com`, ctx()), /longer than 256/, long);
    assert.ok(routes.match(`${'x'.repeat(256)}@example.com`, ctx()));
    substitutionFails(() => routes.match('app:ok', ctx({ name: 42 })), /claim "name" is not a string/);
    substitutionFails(() => routes.match('app:ok', ctx({ name: ['admin'] })), /not a string/);
    substitutionFails(() => routes.match('app:ok', ctx({ name: { toString: 'admin' } })), /not a string/);
    substitutionFails(() => routes.match('app:ok', ctx({})), /the token has no claim "name"/);
    substitutionFails(() => routes.match('app:ok', JSON.parse('{"claims": {"__proto__": "x"}, "startupUser": "u"}') as RouteContext), /not a string|no claim/);
  });

  it('the error for the client is generic', () => {
    const err = substitutionFails(() => routes.match('host:evil.com/x', ctx()), /host name/, 'evil.com');
    assert.equal(err.message, 'no usable backend for this token');
    assert.equal(err.routeKey, '/^host:(.*)$/');
    assert.equal(err.field, 'url');
  });

  it('reports a URL that becomes invalid after substitution without the password', () => {
    const r = parseBackends({ '/^(.*)$/': `postgres://app:${SECRET}@$1/app` }, 'b.yaml');
    substitutionFails(() => r.match('', ctx()), /invalid/);
    substitutionFails(() => parseBackends({ '/^(.*)$/': 'postgres://app@db:$1/app' }, 'b.yaml').match('99999', ctx()), /invalid/);
  });
});

describe('parseBackends: configuration errors', () => {
  it('lists unknown keys and invalid URLs with the file and key, never passwords', () => {
    const err = configFails(
      {
        good: 'postgres://u@h/d',
        analyst: { url: `postgres://analyst:${SECRET}@rds:5432/dw`, pasword: SECRET, applicationName: 'x' },
        broken: `mysql://root:${SECRET}@db/x`,
        badport: `postgres://u:${SECRET}@db:70000/x`,
        badssl: `postgres://u:${SECRET}@db/x?sslmode=maybe`,
      },
      /^backends\.yaml: key "analyst": unknown field "pasword"/m,
      /^backends\.yaml: key "analyst": unknown field "applicationName"/m,
      /^backends\.yaml: key "broken": invalid URL .*scheme must be postgres/m,
      /^backends\.yaml: key "badport": invalid URL .*invalid port/m,
      /^backends\.yaml: key "badssl": invalid URL .*sslmode/m,
    );
    assert.equal(err.problems.length, 5);
    assert.equal(err.source, 'backends.yaml');
    assert.match(err.message, /5 problems/);
  });

  it('refuses bad regexes and flags', () => {
    configFails({ '/(unclosed/': 'postgres://u@h/d' }, /key "\/\(unclosed\/": invalid regular expression/);
    configFails({ '/a/g': 'postgres://u@h/d' }, /flag g is not allowed/);
    configFails({ '/a/q': 'postgres://u@h/d' }, /invalid regular expression/);
    configFails({ '/(nope': 'postgres://u@h/d' }, /invalid regular expression/);
    configFails({ '': 'postgres://u@h/d' }, /empty key/);
  });

  it("reads pg-auth-proxy's /pattern keys (no closing slash) as regular expressions without flags", () => {
    const routes = parseBackends({ '/^(.*)@example.com$': 'postgres://$1@db2/app', '/^a/b$': 'postgres://ab@db3/app' }, 'backend.json');
    assert.equal(routes.match('carol@example.com', ctx())?.target.user, 'carol');
    assert.equal(routes.match('a/b', ctx())?.target.user, 'ab', 'a slash inside the pattern is part of it');
    assert.equal(routes.match('carol@example.org', ctx()), undefined);
  });

  it('refuses bad templates', () => {
    configFails({ '/^(a)$/': 'postgres://$2@h/d' }, /\$2 refers to capture group 2, but the regular expression has only 1/);
    configFails({ '/^a$/': 'postgres://$1@h/d' }, /has none/);
    configFails({ '/^(?<x>a)$/': 'postgres://${y}@h/d' }, /\$\{y\} names no capture group/);
    configFails({ a: { url: 'postgres://u@h/d', user: '{claims.email}' } }, /"user": unknown template variable "\{claims\.email\}"/);
    configFails({ a: { url: 'postgres://u@h/d', database: '{startup.password}' } }, /unknown template variable/);
    configFails({ a: 'postgres://u@h/d?sslmode={claim.mode}' }, /not allowed in the value of "sslmode"/);
    configFails({ a: 'postgres://u@h/d?sslrootcert={claim.ca}&sslmode=verify-ca' }, /sslrootcert/);
    configFails({ a: 'postgres://u@h/d?x{claim.k}=1' }, /query parameter names/);
    configFails({ a: '{claim.scheme}://u@h/d' }, /scheme/);
    configFails({ a: { url: 'postgres://u@h/d', user: 'a\u0000b' } }, /control character/);
  });

  it('checks value shapes, passwordCommand and passwordTtl', () => {
    configFails([], /expected a mapping/);
    configFails(null, /expected a mapping/);
    configFails({}, /no backends defined/);
    configFails({ a: 42 }, /key "a": the value must be a backend URL or an object/);
    configFails({ a: { user: 'x' } }, /"url" is required/);
    configFails({ a: { url: 'postgres://u@h/d', user: 7 } }, /"user" must be a string/);
    configFails({ a: { url: 'postgres://u@h/d', passwordCommand: "aws 'unterminated" } }, /passwordCommand.*unterminated quote/);
    configFails({ a: { url: 'postgres://u@h/d', passwordCommand: '   ' } }, /"passwordCommand" is empty/);
    configFails({ a: { url: 'postgres://u@h/d', passwordCommand: 'x', passwordTtl: 'soon' } }, /"passwordTtl" is an invalid duration/);
    configFails({ a: { url: 'postgres://u@h/d', passwordTtl: '10m' } }, /without "passwordCommand"/);
    configFails({ a: { url: `postgres://u:${SECRET}@h/d`, passwordCommand: 'x' } }, /either a password in "url" or "passwordCommand"/);
  });
});

describe('loadBackendsFile', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pgward-routes-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads YAML and JSON', async () => {
    const yamlPath = join(dir, 'backends.yaml');
    await writeFile(
      yamlPath,
      [
        'alice@example.com: postgres://app:secret@db1:5432/app',
        '"/^(.*)@example\\\\.com$/": postgres://$1@db2:5432/$1',
        'analyst:',
        '  url: postgres://analyst@rds:5432/dw',
        '  passwordCommand: echo hi',
        '  passwordTtl: 10m',
        '"*": postgres://readonly@db1/public',
      ].join('\n'),
    );
    const y = loadBackendsFile(yamlPath);
    assert.equal(y.size, 4);
    assert.equal(y.match('bob@example.com', ctx())!.target.user, 'bob');
    assert.ok(y.match('analyst', ctx())!.passwordCommand);

    const jsonPath = join(dir, 'backends.json');
    await writeFile(jsonPath, JSON.stringify({ '/^(.*)@example\\.com$/': 'postgres://$1@db2/$1', '*': 'postgres://ro@db/x' }));
    const j = loadBackendsFile(jsonPath);
    assert.equal(j.match('dave@example.com', ctx())!.target.database, 'dave');
    assert.equal(j.source, jsonPath);
  });

  it('reports syntax errors and duplicate keys by position, without echoing the file', async () => {
    const p = join(dir, 'broken.yaml');
    await writeFile(p, `a: postgres://u:${SECRET}@h/d\n  b: [\n`);
    assert.throws(
      () => loadBackendsFile(p),
      (e: unknown) => e instanceof RoutingConfigError && e.problems.every((x) => x.startsWith(`${p}: `) && /line \d+/.test(x)) && !e.message.includes(SECRET),
    );
    const d = join(dir, 'dup.json');
    await writeFile(d, `{"a": "postgres://u:${SECRET}@h/d", "a": "postgres://u@h/e"}`);
    assert.throws(
      () => loadBackendsFile(d),
      (e: unknown) => e instanceof RoutingConfigError && /duplicate key at line 1/.test(e.message) && !e.message.includes(SECRET),
    );
    assert.throws(
      () => loadBackendsFile(join(dir, 'missing.yaml')),
      (e: unknown) => e instanceof RoutingConfigError && /missing\.yaml: cannot read the file \(ENOENT\)/.test(e.message),
    );
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, `x:\n  url: postgres://u:${SECRET}@h:0/d\n  foo: 1\n`);
    assert.throws(
      () => loadBackendsFile(bad),
      (e: unknown) =>
        e instanceof RoutingConfigError &&
        e.problems.some((x) => x.startsWith(`${bad}: key "x": unknown field "foo"`)) &&
        e.problems.some((x) => x.startsWith(`${bad}: key "x": invalid URL`)) &&
        !e.message.includes(SECRET),
    );
  });
});
