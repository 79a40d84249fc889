import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  BackendUrlError,
  describeTarget,
  parseBackendUrl,
  redactUrl,
  sslmodeRequiresTls,
  sslmodeVerifiesChain,
  sslmodeVerifiesHost,
  type SslMode,
} from '../../src/backend/url.js';

const SECRET = 'Sup3rS3cr3tPw';

/** Asserts that parsing fails with a BackendUrlError matching `why` whose message lacks `secrets`. */
function rejects(url: string, why: RegExp, ...secrets: string[]): BackendUrlError {
  let caught: unknown;
  try {
    parseBackendUrl(url);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof BackendUrlError, `expected a BackendUrlError for ${redactUrl(url)}, got ${String(caught)}`);
  assert.equal(caught.code, 'PGWARD_ERR_BACKEND_URL');
  assert.match(caught.message, why);
  for (const s of secrets) assert.ok(!caught.message.includes(s), `message leaks a secret: ${caught.message}`);
  return caught;
}

describe('parseBackendUrl', () => {
  it('parses a full URL with defaults filled in', () => {
    assert.deepEqual(parseBackendUrl('postgres://alice:pw@db.example.com:6543/app'), {
      host: 'db.example.com',
      port: 6543,
      user: 'alice',
      password: 'pw',
      database: 'app',
      sslmode: 'prefer',
      connectTimeoutMs: 10_000,
      params: {},
    });
  });

  it('accepts both schemes and applies the default port 5432 and sslmode prefer', () => {
    for (const scheme of ['postgres', 'postgresql', 'PostgreSQL']) {
      const t = parseBackendUrl(`${scheme}://localhost`);
      assert.equal(t.host, 'localhost');
      assert.equal(t.port, 5432);
      assert.equal(t.sslmode, 'prefer');
      assert.equal(t.user, undefined);
      assert.equal(t.password, undefined);
      assert.equal(t.database, undefined);
    }
  });

  it('rejects other schemes', () => {
    rejects('mysql://localhost/db', /scheme must be postgres/);
    rejects('localhost:5432', /scheme must be postgres/);
  });

  it('percent-decodes user, password and database', () => {
    const t = parseBackendUrl('postgresql://us%40er:p%3Aa%2Fss%40w%25rd@h/my%20db%2Fx');
    assert.equal(t.user, 'us@er');
    assert.equal(t.password, 'p:a/ss@w%rd');
    assert.equal(t.database, 'my db/x');
    assert.equal(parseBackendUrl('postgres://j%C3%BCrgen@h').user, 'jürgen');
  });

  it('does not turn "+" into a space (libpq)', () => {
    assert.equal(parseBackendUrl('postgres://u:a+b@h?application_name=x+y').password, 'a+b');
    assert.equal(parseBackendUrl('postgres://h?application_name=x+y').applicationName, 'x+y');
  });

  it('takes the last "@" before the path as the end of the userinfo', () => {
    const t = parseBackendUrl('postgres://alice:p@ss@h/db');
    assert.equal(t.user, 'alice');
    assert.equal(t.password, 'p@ss');
    assert.equal(t.host, 'h');
  });

  it('parses a user without password and a password with an empty user', () => {
    let t = parseBackendUrl('postgres://alice@h');
    assert.equal(t.user, 'alice');
    assert.equal(t.password, undefined);
    t = parseBackendUrl('postgres://:pw@h');
    assert.equal(t.user, undefined);
    assert.equal(t.password, 'pw');
  });

  it('parses IPv6 literals in brackets, with and without port and zone', () => {
    assert.deepEqual([parseBackendUrl('postgres://[::1]').host, parseBackendUrl('postgres://[::1]').port], ['::1', 5432]);
    const t = parseBackendUrl('postgres://u@[2001:db8::10]:6000/db');
    assert.equal(t.host, '2001:db8::10');
    assert.equal(t.port, 6000);
    assert.equal(t.database, 'db');
    assert.equal(parseBackendUrl('postgres://[fe80::1%25eth0]:5433').host, 'fe80::1%eth0');
    assert.equal(parseBackendUrl('postgres://[::ffff:10.0.0.1]').host, '::ffff:10.0.0.1');
  });

  it('rejects malformed IPv6 and unbracketed IPv6', () => {
    rejects('postgres://[::1/db', /unterminated IPv6/);
    rejects('postgres://[::1]x/db', /after the IPv6 address/);
    rejects('postgres://[nothex]/db', /invalid IPv6/);
    rejects('postgres://[1:::2]/db', /invalid IPv6/);
    rejects('postgres://::1/db', /must be written in brackets/);
  });

  it('validates the port', () => {
    assert.equal(parseBackendUrl('postgres://h:1').port, 1);
    assert.equal(parseBackendUrl('postgres://h:65535').port, 65535);
    assert.equal(parseBackendUrl('postgres://h:/db').port, 5432); // empty port → default, as libpq
    rejects('postgres://h:0/db', /invalid port "0"/);
    rejects('postgres://h:65536/db', /invalid port/);
    rejects('postgres://h:54x2/db', /invalid port/);
    rejects('postgres://h?port=-1', /invalid port/);
  });

  it('refuses multiple hosts with a clear error', () => {
    rejects('postgres://h1,h2/db', /multiple hosts are not supported/);
    rejects('postgres://h1:5432,h2:5433/db', /multiple hosts are not supported/);
    rejects('postgres://[::1]:5432,[::2]:5432/db', /multiple hosts are not supported/);
    rejects('postgres:///db?host=a,b', /multiple hosts are not supported/);
    rejects('postgres://h/db?port=5432,5433', /multiple ports are not supported/);
  });

  it('requires a TCP host (no Unix-domain sockets)', () => {
    rejects('postgres:///db', /no host given/);
    rejects('postgres://%2Fvar%2Frun%2Fpostgresql/db', /Unix-domain sockets are not supported/);
    rejects('postgres:///db?host=/tmp', /Unix-domain sockets are not supported/);
    rejects('postgres://bad%20host/db', /invalid host name/);
  });

  it('lets query keys override host, port, user, password and dbname (libpq)', () => {
    const t = parseBackendUrl('postgres://a:b@h1:1/d1?host=h2&port=2&user=c&password=d&dbname=d2');
    assert.equal(t.host, 'h2');
    assert.equal(t.port, 2);
    assert.equal(t.user, 'c');
    assert.equal(t.password, 'd');
    assert.equal(t.database, 'd2');
    assert.equal(parseBackendUrl('postgres:///?host=%3A%3A1').host, '::1');
    assert.equal(parseBackendUrl('postgres:///?host=[::1]').host, '::1');
    // A later duplicate wins.
    assert.equal(parseBackendUrl('postgres://h?application_name=a&application_name=b').applicationName, 'b');
  });

  it('parses the TLS settings', () => {
    const t = parseBackendUrl('postgres://h/db?sslmode=verify-full&sslrootcert=/etc/ca.pem&sslcert=/c.pem&sslkey=/k.pem&sslpassword=kp');
    assert.equal(t.sslmode, 'verify-full');
    assert.equal(t.sslrootcert, '/etc/ca.pem');
    assert.equal(t.sslcert, '/c.pem');
    assert.equal(t.sslkey, '/k.pem');
    assert.equal(t.sslpassword, 'kp');
    for (const mode of ['disable', 'allow', 'prefer', 'require'] as const) {
      assert.equal(parseBackendUrl(`postgres://h?sslmode=${mode}`).sslmode, mode);
    }
    // Empty values mean "not set", as in libpq.
    assert.equal(parseBackendUrl('postgres://h?sslmode=require&sslrootcert=').sslrootcert, undefined);
  });

  it('rejects an unknown sslmode', () => {
    rejects('postgres://h?sslmode=verify', /invalid sslmode "verify"/);
    rejects('postgres://h?sslmode=REQUIRE', /invalid sslmode/);
  });

  it('accepts the JDBC-style ssl=true as sslmode=require', () => {
    assert.equal(parseBackendUrl('postgres://h?ssl=true').sslmode, 'require');
    assert.equal(parseBackendUrl('postgres://h?sslmode=disable&ssl=true').sslmode, 'disable');
    rejects('postgres://h?ssl=1', /only accepted value of "ssl"/);
  });

  it('requires sslrootcert for verify-ca and verify-full', () => {
    rejects('postgres://h?sslmode=verify-ca', /sslmode verify-ca needs sslrootcert/);
    rejects('postgres://h?sslmode=verify-full', /sslmode verify-full needs sslrootcert/);
  });

  it('handles sslrootcert=system like libpq 16: verify-full by default, weaker modes refused', () => {
    assert.equal(parseBackendUrl('postgres://h?sslrootcert=system').sslmode, 'verify-full');
    assert.equal(parseBackendUrl('postgres://h?sslrootcert=system&sslmode=verify-full').sslmode, 'verify-full');
    rejects('postgres://h?sslrootcert=system&sslmode=require', /may not be used with sslrootcert=system/);
    rejects('postgres://h?sslrootcert=system&sslmode=verify-ca', /may not be used with sslrootcert=system/);
  });

  it('requires sslcert and sslkey together', () => {
    rejects('postgres://h?sslcert=/c.pem', /sslcert and sslkey must be given together/);
    rejects('postgres://h?sslkey=/k.pem', /sslcert and sslkey must be given together/);
  });

  it('treats unknown ssl* keys as typos', () => {
    rejects('postgres://h?sslmod=require', /unknown TLS parameter "sslmod"/);
    rejects('postgres://h?ssl_mode=require', /unknown TLS parameter/);
    rejects('postgres://h?SSLMODE=require', /unknown TLS parameter/);
    rejects('postgres://h?sslrootcrt=/ca.pem', /unknown TLS parameter/);
  });

  it('refuses libpq TLS and auth settings it does not implement, unless they have the default value', () => {
    rejects('postgres://h?sslcrl=/crl.pem', /"sslcrl" is not supported/);
    rejects('postgres://h?channel_binding=require', /"channel_binding" is not supported/);
    rejects('postgres://h?require_auth=scram-sha-256', /"require_auth" is not supported/);
    rejects('postgres://h?hostaddr=10.0.0.1', /"hostaddr" is not supported/);
    rejects('postgres://h?service=prod', /"service" is not supported/);
    rejects('postgres://h?gssencmode=require', /"gssencmode" is not supported/);
    rejects('postgres://h?sslnegotiation=direct', /"sslnegotiation" is not supported/);
    rejects('postgres://h?replication=database', /"replication" is not supported/);
    const t = parseBackendUrl('postgres://h?channel_binding=prefer&sslnegotiation=postgres&sslsni=1&gssencmode=disable&sslcertmode=allow');
    assert.deepEqual(t.params, {});
  });

  it('ignores harmless libpq keys such as target_session_attrs', () => {
    const t = parseBackendUrl('postgres://h?target_session_attrs=read-write&keepalives=1&keepalives_idle=30&sslcompression=0&passfile=/x');
    assert.deepEqual(t.params, {});
    assert.equal(t.host, 'h');
  });

  it('parses connect_timeout in seconds (default 10 s; 1 s rounds up to 2 s like libpq)', () => {
    assert.equal(parseBackendUrl('postgres://h').connectTimeoutMs, 10_000);
    assert.equal(parseBackendUrl('postgres://h?connect_timeout=30').connectTimeoutMs, 30_000);
    assert.equal(parseBackendUrl('postgres://h?connect_timeout=1').connectTimeoutMs, 2_000);
    assert.equal(parseBackendUrl('postgres://h?connect_timeout=%205%20').connectTimeoutMs, 5_000);
    rejects('postgres://h?connect_timeout=0', /at least 1 second/);
    rejects('postgres://h?connect_timeout=1.5', /whole number/);
    rejects('postgres://h?connect_timeout=abc', /whole number/);
    rejects('postgres://h?connect_timeout=99999999', /at most/);
  });

  it('parses max_protocol_version as libpq 18 (3.0, 3.2, latest); unset leaves the choice to the login', () => {
    assert.equal(parseBackendUrl('postgres://h').maxProtocolMinor, undefined);
    assert.equal(parseBackendUrl('postgres://h?max_protocol_version=3.0').maxProtocolMinor, 0);
    assert.equal(parseBackendUrl('postgres://h?max_protocol_version=3.2').maxProtocolMinor, 2);
    assert.equal(parseBackendUrl('postgres://h?max_protocol_version=latest').maxProtocolMinor, 2);
    rejects('postgres://h?max_protocol_version=3.1', /3\.0, 3\.2 or latest/);
    assert.deepEqual(parseBackendUrl('postgres://h?max_protocol_version=3.0').params, {}, 'not a startup parameter');
  });

  it('parses application_name (with fallback_application_name) and options', () => {
    const t = parseBackendUrl('postgres://h?application_name=pgward&options=-c%20search_path%3Dapp');
    assert.equal(t.applicationName, 'pgward');
    assert.equal(t.options, '-c search_path=app');
    assert.equal(parseBackendUrl('postgres://h?fallback_application_name=fb').applicationName, 'fb');
    assert.equal(parseBackendUrl('postgres://h?fallback_application_name=fb&application_name=main').applicationName, 'main');
    assert.equal(parseBackendUrl('postgres://h?application_name=').applicationName, '');
  });

  it('collects other GUC-style keys as startup parameters', () => {
    const t = parseBackendUrl('postgres://h/db?search_path=app,public&statement_timeout=5s&myapp.tenant_id=42&client_encoding=UTF8&DateStyle=ISO');
    assert.deepEqual(t.params, {
      search_path: 'app,public',
      statement_timeout: '5s',
      'myapp.tenant_id': '42',
      client_encoding: 'UTF8',
      DateStyle: 'ISO',
    });
    assert.deepEqual(parseBackendUrl('postgres://h?client_encoding=auto').params, {});
    // Even a name that is special in JavaScript stays a plain own property.
    const proto = parseBackendUrl('postgres://h?__proto__=x').params;
    assert.equal(Object.getPrototypeOf(proto), Object.prototype);
    assert.equal(Object.getOwnPropertyDescriptor(proto, '__proto__')?.value, 'x');
  });

  it('refuses parameter names that are not GUCs or that the proxy owns', () => {
    rejects('postgres://h?remote-addr=1.2.3.4', /unknown parameter "remote-addr"/);
    rejects('postgres://h?crdb%3Aremote_addr=1.2.3.4', /unknown parameter/);
    rejects('postgres://h?database=x', /cannot be set as a startup parameter \(use the URL path or dbname\)/);
    rejects('postgres://h?_pq_.foo=1', /protocol option/);
    rejects('postgres://h?a..b=1', /unknown parameter/);
    rejects('postgres://h?1abc=1', /unknown parameter/);
  });

  it('rejects malformed query strings and percent-encoding', () => {
    rejects('postgres://h?sslmode', /has no "=value"/);
    rejects('postgres://h?=x', /empty query parameter name/);
    rejects('postgres://h/db%zz', /invalid percent-encoding in the database name/);
    rejects('postgres://h/db%00', /forbidden %00/);
    rejects('postgres://h/db%C3', /not valid UTF-8/);
    // Empty segments are tolerated.
    assert.equal(parseBackendUrl('postgres://h?&sslmode=require&').sslmode, 'require');
  });

  it('never puts the password into an error message', () => {
    const urls = [
      `postgres://alice:${SECRET}@h/db?sslmode=bogus`,
      `postgres://alice:${SECRET}@h1,h2/db`,
      `postgres://alice:${SECRET}@h:99999/db`,
      `postgres://alice:${SECRET}%zz@h/db`,
      `postgres://alice:${SECRET}@/db`,
      `postgres://alice:${SECRET}@h/db?sslmod=require`,
      `postgres://alice@h/db?password=${SECRET}&sslmode=bogus`,
      `postgres://alice@h/db?sslpassword=${SECRET}&sslmode=bogus`,
      `postgres://alice@h/db?password=${SECRET}&connect_timeout=x`,
      // Unencoded special characters in the password make the URL ambiguous, but must not leak it.
      `postgres://alice:${SECRET}/x@h/db`,
      `postgres://alice:${SECRET}:99@h/db?sslmode=x`,
      `postgres://alice:ab/${SECRET}?z@h/db`,
      `postgres://alice:${SECRET}/4?x@h:0/db`,
      `postgres://alice:pre/${SECRET}@h:1/db?sslmode=x`,
      `mysql://alice:${SECRET}@h/db`,
    ];
    for (const url of urls) {
      rejects(url, /^invalid backend URL /, SECRET);
    }
    const err = rejects(`postgres://alice:${SECRET}@h/db?sslmode=bogus`, /invalid sslmode "bogus"/, SECRET);
    assert.ok(err.message.includes('postgres://alice:***@h/db?sslmode=bogus'), err.message);
    assert.ok(!err.url.includes(SECRET));
  });

  it('does not quote values that the redacted URL hides', () => {
    // "5x" sits inside the password region here, so it must not be echoed as the "port".
    const err = rejects('postgres://alice:5x/y@h/db', /invalid port \(value not shown\)/, '5x');
    assert.match(err.message, /alice:\*\*\*@h\/db/);
  });
});

describe('redactUrl', () => {
  it('replaces the userinfo password with ***', () => {
    assert.equal(redactUrl(`postgres://alice:${SECRET}@h:5432/db?sslmode=require`), 'postgres://alice:***@h:5432/db?sslmode=require');
    assert.equal(redactUrl('postgres://alice@h/db'), 'postgres://alice@h/db');
    assert.equal(redactUrl('postgres://h/db'), 'postgres://h/db');
    assert.equal(redactUrl('postgres://:pw@h/db'), 'postgres://:***@h/db');
  });

  it('replaces password-like query values with ***', () => {
    assert.equal(
      redactUrl(`postgres://h/db?user=a&password=${SECRET}&sslpassword=${SECRET}&sslmode=require`),
      'postgres://h/db?user=a&password=***&sslpassword=***&sslmode=require',
    );
    assert.equal(redactUrl(`postgres://h/db?pass%77ord=${SECRET}`), 'postgres://h/db?pass%77ord=***');
    assert.equal(redactUrl(`postgres://h/db?PASSWORD=${SECRET}`), 'postgres://h/db?PASSWORD=***');
    // An unencoded '&' inside the value stays hidden.
    assert.equal(redactUrl(`postgres://h/db?password=a&b${SECRET}&sslmode=x`), 'postgres://h/db?password=***&sslmode=x');
  });

  it('hides unencoded special characters in passwords (over-redacting rather than leaking)', () => {
    for (const pw of ['p@ss', 'p/ss', 'p?ss', 'a/b?c@d', `${SECRET}#frag`]) {
      const r = redactUrl(`postgres://alice:${pw}@h/db`);
      assert.equal(r, 'postgres://alice:***@h/db');
    }
    const r = redactUrl(`postgres://alice:${SECRET}@h/db?application_name=a@b`);
    assert.ok(!r.includes(SECRET), r);
  });

  it('redacts strings that are not postgres URLs too', () => {
    assert.equal(redactUrl(`mysql://root:${SECRET}@h`), 'mysql://root:***@h');
    assert.ok(!redactUrl(`alice:${SECRET}@h`).includes(SECRET));
  });
});

describe('describeTarget', () => {
  it('renders host:port/db (sslmode)', () => {
    assert.equal(describeTarget(parseBackendUrl(`postgres://a:${SECRET}@db.internal:6432/app?sslmode=require`)), 'db.internal:6432/app (require)');
    assert.equal(describeTarget(parseBackendUrl('postgres://[::1]/app')), '[::1]:5432/app (prefer)');
    assert.equal(describeTarget(parseBackendUrl('postgres://h')), 'h:5432/ (prefer)');
  });
});

describe('sslmode helpers', () => {
  const modes: SslMode[] = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];
  it('sslmodeRequiresTls', () => {
    assert.deepEqual(modes.map(sslmodeRequiresTls), [false, false, false, true, true, true]);
  });
  it('sslmodeVerifiesChain: verify-* always; require (and prefer/allow) when sslrootcert is given', () => {
    assert.deepEqual(modes.map((m) => sslmodeVerifiesChain(m)), [false, false, false, false, true, true]);
    assert.deepEqual(modes.map((m) => sslmodeVerifiesChain(m, '/ca.pem')), [false, true, true, true, true, true]);
    assert.equal(sslmodeVerifiesChain('require', ''), false);
  });
  it('sslmodeVerifiesHost: verify-full only', () => {
    assert.deepEqual(modes.map(sslmodeVerifiesHost), [false, false, false, false, false, true]);
  });
  it('a parsed require + sslrootcert target verifies the chain but not the host', () => {
    const t = parseBackendUrl('postgres://h?sslmode=require&sslrootcert=/ca.pem');
    assert.equal(sslmodeVerifiesChain(t.sslmode, t.sslrootcert), true);
    assert.equal(sslmodeVerifiesHost(t.sslmode), false);
  });
});
