// What a native carrier reports of its session, named here from the numbers C writes.
import type { Buffer } from 'node:buffer';
import { getSystemErrorMap } from 'node:util';
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
  /** Fills `out` (REPORT_SLOTS numbers) with what `reportNames.slots` names, in that order. */
  report(handle: object, out: Float64Array): void;
  /** How it ended, as an object made in C; takes the unsent bytes. */
  ended(handle: object): Ended;
  /** The name of each of report()'s slots in order, and of each state by its number. */
  readonly reportNames: { readonly slots: readonly string[]; readonly reasons: readonly string[] };
}

/** What JavaScript reads of report()'s slots, each by the name C gives it. */
export const REPORT_FIELDS = [
  'transactionStatus',
  'unanswered',
  'terminated',
  'backendSaidFatal',
  'bytesToClient',
  'bytesToBackend',
  'clientMidMessage',
  'backendMidMessage',
  'reusable',
  'state',
  'errno',
  'unsentToClient',
  'unsentToBackend',
] as const;
type Layout = Record<(typeof REPORT_FIELDS)[number], number> & { reasons: readonly (CarrierEndReason | 'running')[] };

/**
 * Where each field is in report()'s numbers, by the names C gives its slots: nothing here counts
 * positions, so C may order its slots as it likes. Read once, from the first carrier's addon.
 */
let layout: Layout | undefined;
/** Where `report` writes; read at once, before anything else can ask. */
let slots = new Float64Array(0);

function layoutOf(lib: ReportingAddon): Layout {
  if (layout) return layout;
  const { slots: names, reasons } = lib.reportNames;
  const at = {} as Record<string, number>;
  for (const name of REPORT_FIELDS) {
    const i = names.indexOf(name);
    if (i < 0) throw new Error(`the native addon reports no "${name}": it is older than this pgward (npm run build)`);
    at[name] = i;
  }
  slots = new Float64Array(names.length);
  layout = { ...(at as Record<(typeof REPORT_FIELDS)[number], number>), reasons: reasons as Layout['reasons'] };
  return layout;
}

/**
 * A carrier's status now. Objects made in C property by property cost some 2 µs a call, each name
 * made and stored through V8's slow path; this literal costs nearly nothing.
 */
export function reportedStatus(lib: ReportingAddon, handle: object): CarrierStatus {
  const at = layoutOf(lib);
  lib.report(handle, slots);
  return statusInSlots(at);
}

/** A halted carrier's last status and how it ended; `ended` asked of C only for unsent bytes or a violation. */
export function reportedEnd(lib: ReportingAddon, handle: object): { status: CarrierStatus; ended: Ended } {
  const at = layoutOf(lib);
  lib.report(handle, slots);
  const reason = at.reasons[slots[at.state]!]!;
  if (slots[at.unsentToClient]! > 0 || slots[at.unsentToBackend]! > 0 || reason === 'client-violation' || reason === 'backend-violation') {
    // It takes the unsent bytes first: the status is the one after that (a backend whose unsent
    // whole messages are dropped can be reusable), as it always was.
    const ended = lib.ended(handle);
    lib.report(handle, slots);
    return { status: statusInSlots(at), ended };
  }
  return { status: statusInSlots(at), ended: { reason, errno: slots[at.errno]! } };
}

function statusInSlots(at: Layout): CarrierStatus {
  return {
    transactionStatus: String.fromCharCode(slots[at.transactionStatus]!) as CarrierStatus['transactionStatus'],
    unanswered: slots[at.unanswered]!,
    terminated: slots[at.terminated] !== 0,
    backendSaidFatal: slots[at.backendSaidFatal] !== 0,
    bytesToClient: slots[at.bytesToClient]!,
    bytesToBackend: slots[at.bytesToBackend]!,
    clientMidMessage: slots[at.clientMidMessage] !== 0,
    backendMidMessage: slots[at.backendMidMessage] !== 0,
    reusable: slots[at.reusable] !== 0,
  };
}

/**
 * The socket error a carrier ended on, named as Node names its own (`code` ECONNRESET and the
 * system's text), so both carriers tell the same cause.
 */
export function socketErrorOf(errno: number): Error {
  const known = getSystemErrorMap().get(-errno);
  if (!known) return new Error(`errno ${errno}`);
  return Object.assign(new Error(`${known[1]} (${known[0]})`), { code: known[0], errno: -errno });
}
