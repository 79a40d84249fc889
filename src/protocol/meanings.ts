// What each message means to the proxy's own bookkeeping — the one table that the session state,
// statement telemetry, both carriers and (through native/pg-protocol.h, generated from it) the
// native carrier read. Message content is never needed here: every meaning follows from the type
// byte, the transaction status byte of a ReadyForQuery and the severity of an ErrorResponse.
import { FrontendSpecs, type FrontendType } from './frontend.js';
import { BackendSpecs, type BackendType } from './backend.js';
import { Limits } from './framer.js';
import { ErrorFieldCodes } from './errors.js';

/** PostgreSQL's own limit (`PQ_SMALL_MESSAGE_LIMIT`) for frontend messages that carry little more than a name. */
export const SMALL_MESSAGE_LIMIT = 10_000;

export interface FrontendMeaning {
  /** Answered by a ReadyForQuery of its own: counted as unanswered until then (Query, Sync, FunctionCall). */
  readonly awaitsReady?: true;
  /** Starts a statement that statement telemetry times (Query, Execute). */
  readonly startsStatement?: true;
  /** Belongs to an extended-protocol batch, which only a Sync closes. */
  readonly extended?: true;
  /** Closes the extended-protocol batch (Sync). */
  readonly closesBatch?: true;
  /** The client's goodbye (Terminate). */
  readonly terminates?: true;
  /** The largest length field PostgreSQL accepts for it (`SocketBackend` in postgres.c). */
  readonly maxLength: number;
}

export interface BackendMeaning {
  /** Ends the oldest running statement, as a success or a failure. */
  readonly endsStatement?: 'ok' | 'error';
  /**
   * ReadyForQuery: carries the transaction status, answers one request that awaits it, and ends
   * whatever statements are still counted (an error made the backend skip them).
   */
  readonly ready?: true;
  /** Not the backend's "last word": a FATAL ErrorResponse stays its last word when one of these follows. */
  readonly keepsLastWord?: true;
  /** An ErrorResponse: its severity says whether the backend is leaving (see `LEAVING_SEVERITIES`). */
  readonly reportsError?: true;
  readonly maxLength: number;
}

const LARGE = Limits.message;

export const FRONTEND_MEANINGS: { readonly [T in FrontendType]: FrontendMeaning } = {
  Query: { awaitsReady: true, startsStatement: true, maxLength: LARGE },
  FunctionCall: { awaitsReady: true, maxLength: LARGE },
  Parse: { extended: true, maxLength: LARGE },
  Bind: { extended: true, maxLength: LARGE },
  Execute: { extended: true, startsStatement: true, maxLength: SMALL_MESSAGE_LIMIT },
  Describe: { extended: true, maxLength: SMALL_MESSAGE_LIMIT },
  Close: { extended: true, maxLength: SMALL_MESSAGE_LIMIT },
  Flush: { extended: true, maxLength: SMALL_MESSAGE_LIMIT },
  Sync: { awaitsReady: true, closesBatch: true, maxLength: SMALL_MESSAGE_LIMIT },
  Terminate: { terminates: true, maxLength: SMALL_MESSAGE_LIMIT },
  CopyData: { maxLength: LARGE },
  CopyDone: { maxLength: SMALL_MESSAGE_LIMIT },
  CopyFail: { maxLength: SMALL_MESSAGE_LIMIT },
  // Only in the authentication exchange, which has its own limits.
  AuthResponse: { maxLength: LARGE },
};

export const BACKEND_MEANINGS: { readonly [T in BackendType]: BackendMeaning } = {
  CommandComplete: { endsStatement: 'ok', maxLength: LARGE },
  EmptyQueryResponse: { endsStatement: 'ok', maxLength: LARGE },
  PortalSuspended: { endsStatement: 'ok', maxLength: LARGE },
  ErrorResponse: { endsStatement: 'error', reportsError: true, maxLength: LARGE },
  ReadyForQuery: { ready: true, keepsLastWord: true, maxLength: LARGE },
  NoticeResponse: { keepsLastWord: true, maxLength: LARGE },
  NotificationResponse: { keepsLastWord: true, maxLength: LARGE },
  Authentication: { maxLength: LARGE },
  BackendKeyData: { maxLength: LARGE },
  BindComplete: { maxLength: LARGE },
  CloseComplete: { maxLength: LARGE },
  CopyData: { maxLength: LARGE },
  CopyDone: { maxLength: LARGE },
  CopyInResponse: { maxLength: LARGE },
  CopyOutResponse: { maxLength: LARGE },
  CopyBothResponse: { maxLength: LARGE },
  DataRow: { maxLength: LARGE },
  FunctionCallResponse: { maxLength: LARGE },
  NegotiateProtocolVersion: { maxLength: LARGE },
  NoData: { maxLength: LARGE },
  ParameterDescription: { maxLength: LARGE },
  ParameterStatus: { maxLength: LARGE },
  ParseComplete: { maxLength: LARGE },
  RowDescription: { maxLength: LARGE },
};

/**
 * How an ErrorResponse says the backend is leaving: its severity reads one of these, in field `V`
 * (never translated; PostgreSQL 9.6 and later) or, when there is no `V`, in field `S`.
 */
export const LEAVING_SEVERITIES = ['FATAL', 'PANIC'] as const;
export const SEVERITY_FIELD = ErrorFieldCodes.severityV;
export const LOCALIZED_SEVERITY_FIELD = ErrorFieldCodes.severity;

// The table as flags per type byte, for the per-message paths (and the C header).
export const FE_AWAITS_READY = 1;
export const FE_STARTS_STATEMENT = 2;
export const FE_EXTENDED = 4;
export const FE_CLOSES_BATCH = 8;
export const FE_TERMINATES = 16;

export const BE_ENDS_OK = 1;
export const BE_ENDS_ERROR = 2;
export const BE_READY = 4;
export const BE_KEEPS_LAST_WORD = 8;
export const BE_REPORTS_ERROR = 16;

/** Flags of each frontend type byte (0 for types the table does not name). */
export const frontendFlags = new Uint8Array(256);
/** Flags of each backend type byte. */
export const backendFlags = new Uint8Array(256);
/** Largest length field accepted per frontend type byte (types the table does not name: the protocol's limit). */
export const frontendMaxLength = new Uint32Array(256).fill(LARGE);
export const backendMaxLength = new Uint32Array(256).fill(LARGE);

for (const [type, m] of Object.entries(FRONTEND_MEANINGS) as [FrontendType, FrontendMeaning][]) {
  const code = FrontendSpecs[type].code;
  frontendFlags[code] =
    (m.awaitsReady ? FE_AWAITS_READY : 0) |
    (m.startsStatement ? FE_STARTS_STATEMENT : 0) |
    (m.extended ? FE_EXTENDED : 0) |
    (m.closesBatch ? FE_CLOSES_BATCH : 0) |
    (m.terminates ? FE_TERMINATES : 0);
  frontendMaxLength[code] = m.maxLength;
}
for (const [type, m] of Object.entries(BACKEND_MEANINGS) as [BackendType, BackendMeaning][]) {
  const code = BackendSpecs[type].code;
  backendFlags[code] =
    (m.endsStatement === 'ok' ? BE_ENDS_OK : 0) |
    (m.endsStatement === 'error' ? BE_ENDS_ERROR : 0) |
    (m.ready ? BE_READY : 0) |
    (m.keepsLastWord ? BE_KEEPS_LAST_WORD : 0) |
    (m.reportsError ? BE_REPORTS_ERROR : 0);
  backendMaxLength[code] = m.maxLength;
}

/** Whether an ErrorResponse's fields (as decoded) say the backend is leaving. */
export function leavingSeverity(fields: { severity?: string; severityV?: string }): boolean {
  const severity = fields.severityV ?? fields.severity;
  return severity !== undefined && (LEAVING_SEVERITIES as readonly string[]).includes(severity);
}
