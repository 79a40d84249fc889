import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatDuration, parseDuration } from '../../src/util/duration.js';
import { formatHostPort, parseHostPort } from '../../src/util/host-port.js';

describe('util: durations', () => {
  it('formats in the largest exact unit, and parseDuration reads it back', () => {
    const cases: [number, string][] = [
      [0, '0s'],
      [250, '250ms'],
      [1500, '1500ms'],
      [30_000, '30s'],
      [90_000, '90s'],
      [600_000, '10m'],
      [7_200_000, '2h'],
      [5_400_000, '90m'],
    ];
    for (const [ms, text] of cases) {
      assert.equal(formatDuration(ms), text);
      assert.equal(parseDuration(text), ms);
    }
  });
});

describe('util: host:port', () => {
  it('brackets IPv6 hosts only', () => {
    assert.equal(formatHostPort('127.0.0.1', 6432), '127.0.0.1:6432');
    assert.equal(formatHostPort('db.internal', 5432), 'db.internal:5432');
    assert.equal(formatHostPort('::1', 5432), '[::1]:5432');
    assert.equal(formatHostPort('[::1]', 5432), '[::1]:5432', 'an already bracketed host is not bracketed twice');
  });

  it('parses what it formats, and refuses what is not HOST:PORT', () => {
    for (const [host, port] of [['127.0.0.1', 6432], ['::1', 5432], ['db.internal', 1]] as const) {
      assert.deepEqual(parseHostPort(formatHostPort(host, port)), { host, port });
    }
    assert.deepEqual(parseHostPort(':6432'), { host: '0.0.0.0', port: 6432 });
    assert.throws(() => parseHostPort('localhost'), /invalid address "localhost" \(use HOST:PORT\)/);
    assert.throws(() => parseHostPort('::1:5432'), /invalid address/);
    assert.throws(() => parseHostPort('h:70000'), /invalid port in "h:70000"/);
  });
});
