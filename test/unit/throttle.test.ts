import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AuthThrottle, type AuthThrottleOptions } from '../../src/server/throttle.js';

function throttle(opts: AuthThrottleOptions = {}) {
  const clock = { t: 1_000_000 };
  const t = new AuthThrottle({ now: () => clock.t, ...opts });
  const fail = (address: string, n: number) => {
    for (let i = 0; i < n; i++) t.failure(address);
  };
  return { t, clock, fail };
}

describe('AuthThrottle', () => {
  it('allows the first failures, then delays 1 s doubling, then refuses past the 60 s cap', () => {
    const { t, fail } = throttle();
    const ip = '203.0.113.5';
    for (let i = 0; i < 10; i++) {
      assert.deepEqual(t.check(ip), { action: 'allow' }, `attempt ${i + 1}`);
      t.failure(ip);
    }
    const delays: number[] = [];
    for (;;) {
      const d = t.check(ip);
      if (d.action !== 'delay') {
        assert.equal(d.action, 'refuse');
        break;
      }
      delays.push(d.ms);
      fail(ip, 1);
    }
    assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000, 32000]);
    assert.deepEqual(t.check(ip), { action: 'refuse', retryAfterMs: 10 * 60_000 });
  });

  it('allows a delay equal to the cap', () => {
    const { t, fail } = throttle({ after: 1, baseDelayMs: 15_000, maxDelayMs: 60_000 });
    fail('a', 1);
    const seen = [t.check('a')];
    fail('a', 1);
    seen.push(t.check('a'));
    fail('a', 1);
    seen.push(t.check('a'));
    fail('a', 1);
    seen.push(t.check('a'));
    assert.deepEqual(
      seen.map((d) => (d.action === 'delay' ? d.ms : d.action)),
      [15_000, 30_000, 60_000, 'refuse'],
    );
  });

  it('counts per address and resets on success', () => {
    const { t, fail } = throttle({ after: 2 });
    fail('10.0.0.1', 3);
    assert.equal(t.check('10.0.0.1').action, 'delay');
    assert.equal(t.check('10.0.0.2').action, 'allow');
    t.success('10.0.0.1');
    assert.equal(t.check('10.0.0.1').action, 'allow');
    assert.equal(t.size, 0);
  });

  it('forgets an address after forgetAfterMs without failures, refused ones included', () => {
    const { t, clock, fail } = throttle({ after: 1, forgetAfterMs: 60_000 });
    fail('a', 20);
    const r = t.check('a');
    assert.deepEqual(r, { action: 'refuse', retryAfterMs: 60_000 });
    clock.t += 59_000;
    assert.deepEqual(t.check('a'), { action: 'refuse', retryAfterMs: 1_000 }, 'refused attempts do not extend it');
    clock.t += 1_000;
    assert.deepEqual(t.check('a'), { action: 'allow' });
    assert.equal(t.size, 0);
  });

  it('counts delayed attempts still under way, so parallel attempts escalate too', () => {
    const { t, fail } = throttle({ after: 3 });
    fail('a', 3);
    const parallel = [t.check('a'), t.check('a'), t.check('a')];
    assert.deepEqual(
      parallel.map((d) => (d.action === 'delay' ? d.ms : d.action)),
      [1000, 2000, 4000],
    );
    fail('a', 3); // their outcomes
    assert.deepEqual(t.check('a'), { action: 'delay', ms: 8000 });
  });

  it('is bounded in memory: the least recently failed address is forgotten first', () => {
    const { t, fail } = throttle({ after: 1, maxEntries: 3 });
    fail('a', 2);
    fail('b', 2);
    fail('c', 2);
    fail('a', 1); // a is now the most recent
    fail('d', 2); // evicts b
    assert.equal(t.size, 3);
    assert.equal(t.check('b').action, 'allow');
    for (const x of ['a', 'c', 'd']) assert.notEqual(t.check(x).action, 'allow', x);

    const big = throttle({ maxEntries: 1000 });
    for (let i = 0; i < 20_000; i++) big.t.failure(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    assert.equal(big.t.size, 1000);
  });

  it('counts IPv6 clients per /64 and IPv4-mapped addresses as IPv4', () => {
    const { t, fail } = throttle({ after: 2 });
    fail('2001:db8:1:2::1', 1);
    fail('[2001:db8:1:2:ffff::9]', 1);
    fail('2001:db8:1:2:abcd:0:0:1%eth0', 1);
    assert.equal(t.check('2001:db8:1:2::77').action, 'delay');
    assert.equal(t.check('2001:db8:1:3::1').action, 'allow');
    fail('::ffff:192.0.2.1', 3);
    assert.equal(t.check('192.0.2.1').action, 'delay');
    const exact = throttle({ after: 0, ipv6PrefixLength: 128 });
    exact.fail('2001:db8::1', 1);
    assert.equal(exact.t.check('2001:db8::2').action, 'allow');
    assert.equal(exact.t.check('2001:db8::1').action, 'delay');
  });

  it('keys anything that is not an IP address as it is', () => {
    const { t, fail } = throttle({ after: 0 });
    fail('/tmp/.s.PGSQL.5432', 1);
    assert.equal(t.check('/tmp/.s.PGSQL.5432').action, 'delay');
    assert.equal(t.check('').action, 'allow');
  });

  it('refuses bad options', () => {
    assert.throws(
      () => new AuthThrottle({ after: -1, baseDelayMs: 0, maxEntries: 1.5 }),
      /after must be an integer >= 0.*baseDelayMs must be a number >= 1.*maxEntries must be an integer >= 1/,
    );
    assert.throws(() => new AuthThrottle({ baseDelayMs: 5000, maxDelayMs: 1000 }), /maxDelayMs/);
    assert.throws(() => new AuthThrottle({ ipv6PrefixLength: 129 }), /ipv6PrefixLength/);
  });
});
