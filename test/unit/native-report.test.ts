import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Ended } from '../../src/pipeline/native-report.js';
import { REPORT_FIELDS, reportedEnd, reportedStatus } from '../../src/pipeline/native-report.js';
import { nativeAddon } from '../../src/transport/native-addon.js';

const REASONS = ['running', 'stopped', 'released', 'client-eof', 'backend-eof', 'client-error', 'backend-error', 'client-violation', 'backend-violation'];

/** An addon stand-in that lays its slots out in `order` and fills them from `values` by name. */
function fakeAddon(order: string[], reasons: string[], values: Record<string, number>, ended?: Ended) {
  const calls = { ended: 0 };
  const lib = {
    reportNames: { slots: order, reasons },
    report(_handle: object, out: Float64Array) {
      order.forEach((name, i) => (out[i] = values[name] ?? 0));
    },
    ended(): Ended {
      calls.ended++;
      return ended ?? { reason: 'stopped', errno: 0 };
    },
  };
  return { lib, calls };
}

describe('a native carrier report crosses into JavaScript by name', () => {
  it("the addon names every slot JavaScript reads, and every state a carrier ends in", () => {
    const addon = nativeAddon();
    assert.ok('lib' in addon, `the native addon loads (${'error' in addon ? addon.error : ''})`);
    const names = addon.lib.reportNames as { slots: string[]; reasons: string[] };
    assert.deepEqual([...names.slots].sort(), [...REPORT_FIELDS].sort());
    assert.deepEqual([...names.reasons].sort(), [...REASONS].sort());
  });

  // One process holds one layout (read from the first addon), so both checks below use the same
  // stand-in order: reversed and rotated, nothing where JavaScript would find it by position.
  const order = [...REPORT_FIELDS].reverse().slice(3).concat([...REPORT_FIELDS].reverse().slice(0, 3));
  const reasons = [...REASONS].reverse();

  it('reads a status whatever order C lays the slots out in', () => {
    const { lib } = fakeAddon(order, reasons, {
      transactionStatus: 'T'.charCodeAt(0),
      unanswered: 2,
      terminated: 0,
      backendSaidFatal: 1,
      bytesToClient: 1234,
      bytesToBackend: 56,
      clientMidMessage: 0,
      backendMidMessage: 1,
      reusable: 0,
    });
    assert.deepEqual(reportedStatus(lib, {}), {
      transactionStatus: 'T',
      unanswered: 2,
      terminated: false,
      backendSaidFatal: true,
      bytesToClient: 1234,
      bytesToBackend: 56,
      clientMidMessage: false,
      backendMidMessage: true,
      reusable: false,
    });
  });

  it('names how a carrier ended by the names C gives its states, asking C only for unsent bytes or a violation', () => {
    const state = (reason: string) => reasons.indexOf(reason);
    const eof = fakeAddon(order, reasons, { transactionStatus: 73, state: state('client-eof'), errno: 0, reusable: 1 });
    const end = reportedEnd(eof.lib, {});
    assert.deepEqual(end.ended, { reason: 'client-eof', errno: 0 });
    assert.equal(end.status.reusable, true);
    assert.equal(eof.calls.ended, 0);

    const violation: Ended = { reason: 'backend-violation', errno: 0, violation: { code: 'D', length: 3, kind: 'invalid-length' } };
    const bad = fakeAddon(order, reasons, { transactionStatus: 73, state: state('backend-violation') }, violation);
    assert.deepEqual(reportedEnd(bad.lib, {}).ended, violation);
    assert.equal(bad.calls.ended, 1);

    const unsent = fakeAddon(order, reasons, { transactionStatus: 73, state: state('stopped'), unsentToClient: 10 });
    reportedEnd(unsent.lib, {});
    assert.equal(unsent.calls.ended, 1);
  });
});
