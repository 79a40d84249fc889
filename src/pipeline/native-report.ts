// What a native carrier reports of its session, named here from the numbers C writes.
import type { Buffer } from 'node:buffer';
import type { CarrierEndReason, CarrierStatus } from './carrier.js';

/** How a native carrier ended (the addon's `ended`). */
export interface Ended {
  reason: CarrierEndReason | 'running';
  errno: number;
  violation?: { code: string; length: number; kind: 'invalid-length' | 'too-long' };
  unsentToClient?: Buffer;
  unsentToBackend?: Buffer;
}

/** The addon's reporting functions (native/binding-report.c). */
interface ReportingAddon {
  /** Fills `out` (REPORT_SLOTS numbers): the status, the state, errno, the unsent byte counts. */
  report(handle: object, out: Float64Array): void;
  /** How it ended, as an object made in C; takes the unsent bytes. */
  ended(handle: object): Ended;
}

/** The carrier's states (R_* of native/carrier.h) by number, as `ended` names them. */
const REASONS = ['running', 'stopped', 'released', 'client-eof', 'backend-eof', 'client-error', 'backend-error', 'client-violation', 'backend-violation'] as const;
const R_CLIENT_VIOLATION = 7;
const REPORT_SLOTS = 13;
/** Where `report` writes; read at once, before anything else can ask. */
const slots = new Float64Array(REPORT_SLOTS);

/**
 * A carrier's status now. Objects made in C property by property (the addon's `status`) cost
 * some 2 µs a call, each name made and stored through V8's slow path; this literal costs nearly
 * nothing.
 */
export function reportedStatus(lib: ReportingAddon, handle: object): CarrierStatus {
  lib.report(handle, slots);
  return statusInSlots();
}

/** A halted carrier's last status and how it ended; `ended` asked of C only for unsent bytes or a violation. */
export function reportedEnd(lib: ReportingAddon, handle: object): { status: CarrierStatus; ended: Ended } {
  lib.report(handle, slots);
  if (slots[11]! > 0 || slots[12]! > 0 || slots[9]! >= R_CLIENT_VIOLATION) {
    // It takes the unsent bytes first: the status is the one after that (a backend whose unsent
    // whole messages are dropped can be reusable), as it always was.
    const ended = lib.ended(handle);
    lib.report(handle, slots);
    return { status: statusInSlots(), ended };
  }
  return { status: statusInSlots(), ended: { reason: REASONS[slots[9]!]!, errno: slots[10]! } };
}

function statusInSlots(): CarrierStatus {
  return {
    transactionStatus: String.fromCharCode(slots[0]!) as CarrierStatus['transactionStatus'],
    unanswered: slots[1]!,
    terminated: slots[2] !== 0,
    backendSaidFatal: slots[3] !== 0,
    bytesToClient: slots[4]!,
    bytesToBackend: slots[5]!,
    clientMidMessage: slots[6] !== 0,
    backendMidMessage: slots[7] !== 0,
    reusable: slots[8] !== 0,
  };
}
