import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { protocolHeader } from '../../src/protocol/c-header.js';
import {
  BACKEND_MEANINGS,
  backendFlags,
  BE_ENDS_ERROR,
  BE_ENDS_OK,
  BE_READY,
  FE_AWAITS_READY,
  FE_STARTS_STATEMENT,
  FRONTEND_MEANINGS,
  frontendFlags,
  frontendMaxLength,
  leavingSeverity,
  fe,
  Framer,
  Limits,
  SMALL_MESSAGE_LIMIT,
  type PgError,
} from '../../src/protocol/index.js';

const code = (c: string) => c.charCodeAt(0);

describe('the protocol table', () => {
  it('is what native/pg-protocol.h says (run `node native/gen-protocol-header.mjs` after changing the table)', () => {
    const committed = readFileSync(fileURLToPath(new URL('../../../native/pg-protocol.h', import.meta.url)), 'utf8');
    assert.equal(committed, protocolHeader());
  });

  it('puts every meaning in the header as C: the flag bytes and limits of each type', () => {
    const header = protocolHeader();
    assert.match(header, /\[0x51\] \/\* 'Q' Query \*\/ = PGP_FE_AWAITS_READY \| PGP_FE_STARTS_STATEMENT,/);
    assert.match(header, /\[0x53\] \/\* 'S' Sync \*\/ = 10000u,/);
    assert.match(header, /\[0x5a\] \/\* 'Z' ReadyForQuery \*\/ = PGP_BE_READY \| PGP_BE_KEEPS_LAST_WORD,/);
    assert.match(header, /pgp_leaving_severities\[PGP_LEAVING_SEVERITY_COUNT\] = \{"FATAL", "PANIC"\};/);
    // A type the table does not limit keeps the protocol's own limit (0 in the header).
    assert.doesNotMatch(header, /'Q' Query \*\/ = \d+u/);
  });

  it('names the requests that await a ReadyForQuery and the statements that are timed', () => {
    const awaiting = Object.entries(FRONTEND_MEANINGS).filter(([, m]) => m.awaitsReady).map(([t]) => t);
    assert.deepEqual(awaiting.sort(), ['FunctionCall', 'Query', 'Sync']);
    assert.equal(frontendFlags[code('Q')]! & FE_AWAITS_READY, FE_AWAITS_READY);
    assert.equal(frontendFlags[code('E')]! & FE_STARTS_STATEMENT, FE_STARTS_STATEMENT, 'Execute');
    assert.equal(frontendFlags[code('P')]! & (FE_AWAITS_READY | FE_STARTS_STATEMENT), 0, 'Parse');
  });

  it('says how each statement ends, per backend type byte (E is an ErrorResponse from the backend)', () => {
    for (const c of ['C', 'I', 's']) assert.equal(backendFlags[code(c)], BE_ENDS_OK, c);
    assert.equal(backendFlags[code('E')]! & BE_ENDS_ERROR, BE_ENDS_ERROR);
    assert.equal(backendFlags[code('Z')]! & BE_READY, BE_READY);
    assert.equal(BACKEND_MEANINGS.DataRow.endsStatement, undefined);
  });

  it("limits frontend messages as PostgreSQL's SocketBackend does", () => {
    for (const c of ['C', 'D', 'E', 'H', 'S', 'X', 'c', 'f']) assert.equal(frontendMaxLength[code(c)], SMALL_MESSAGE_LIMIT, c);
    for (const c of ['Q', 'P', 'B', 'F', 'd']) assert.equal(frontendMaxLength[code(c)], Limits.message, c);
    assert.equal(frontendMaxLength[0x01], Limits.message, 'an unknown type keeps the protocol limit');
  });

  it('has the JavaScript framer apply the limits per type during the relay', () => {
    const framer = new Framer();
    framer.bound({ maxAssembled: Limits.assembledMessage, typeMaxLength: frontendMaxLength });
    const frames: number[] = [];
    framer.push(fe.query('x'.repeat(20_000)).raw, (c) => frames.push(c));
    assert.deepEqual(frames, [code('Q')]);
    const longSync = Buffer.concat([Buffer.from([code('S'), 0, 0, 0x4e, 0x24]), Buffer.alloc(20_000)]);
    assert.throws(() => framer.push(longSync, () => {}), (e: PgError) => e.sqlstate === '08P01' && /invalid message length 20004/.test(e.message));
  });

  it('reads a leaving backend from the V severity, or S when there is no V', () => {
    assert.equal(leavingSeverity({ severityV: 'FATAL', severity: 'SCHWERWIEGEND' }), true);
    assert.equal(leavingSeverity({ severityV: 'ERROR', severity: 'FATAL' }), false);
    assert.equal(leavingSeverity({ severity: 'PANIC' }), true);
    assert.equal(leavingSeverity({ severity: 'WARNING' }), false);
  });
});
