import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { copyTarget, loginTarget } from '../../src/backend/target-copy.js';
import { parseBackendUrl, type BackendTarget } from '../../src/backend/url.js';

describe('copyTarget and loginTarget', () => {
  it('copies every field a target can have, and its params as an object of its own', () => {
    // Required: a field added to BackendTarget must be added here, and then to copyTarget.
    const full: Required<BackendTarget> = {
      host: 'db', port: 6543, user: 'u', password: 'p', database: 'd', sslmode: 'verify-full', sslrootcert: '/ca', sslcert: '/c',
      sslkey: '/k', sslpassword: 'kp', applicationName: 'a', options: '-c x=1', connectTimeoutMs: 5, maxProtocolMinor: 2,
      params: { search_path: 's' }, pool: { maxSize: 3 }, routeId: 'r', passwordFromCommand: true,
    };
    const copy = copyTarget(full);
    assert.deepEqual(copy, full);
    assert.notEqual(copy.params, full.params);
    copy.params.extra = 'x';
    assert.equal(full.params.extra, undefined);
  });

  it("makes a session's login target: a copy with its user, database and password, the route's target untouched", () => {
    const t = parseBackendUrl('postgres://app:secret@db/app?search_path=s');
    const login = loginTarget(t, 'alice', 'sales', undefined);
    assert.deepEqual(login, { ...t, user: 'alice', database: 'sales', password: undefined });
    assert.ok('password' in login, 'an unknown password is there as undefined, for the login to see');
    assert.equal(t.user, 'app');
    assert.equal(t.password, 'secret');
    assert.notEqual(login.params, t.params);
  });

  it('gives the copy only the fields the target has', () => {
    const t = parseBackendUrl('postgres://db/app');
    assert.deepEqual(Object.keys(copyTarget(t)).sort(), Object.keys(t).sort());
  });
});
