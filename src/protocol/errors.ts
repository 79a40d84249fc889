/**
 * The one error type that crosses layers. Anything that should reach a PostgreSQL client as an
 * ErrorResponse is (or is converted to) a PgError; its fields follow the protocol's field codes.
 */
export type Severity = 'ERROR' | 'FATAL' | 'PANIC' | 'WARNING' | 'NOTICE' | 'DEBUG' | 'INFO' | 'LOG';

/** SQLSTATE codes pgward itself produces; backend codes are relayed as they come. */
export const SqlState = {
  SuccessfulCompletion: '00000',
  ConnectionException: '08000',
  ConnectionDoesNotExist: '08003',
  ConnectionFailure: '08006',
  SqlclientUnableToEstablishSqlconnection: '08001',
  ProtocolViolation: '08P01',
  FeatureNotSupported: '0A000',
  InvalidAuthorizationSpecification: '28000',
  InvalidPassword: '28P01',
  TooManyConnections: '53300',
  ProgramLimitExceeded: '54000',
  AdminShutdown: '57P01',
  CannotConnectNow: '57P03',
  QueryCanceled: '57014',
  InsufficientPrivilege: '42501',
  InternalError: 'XX000',
} as const;

/** Every field an ErrorResponse/NoticeResponse may carry, keyed by its protocol field code. */
export const ErrorFieldCodes = {
  severity: 'S',
  severityV: 'V',
  code: 'C',
  message: 'M',
  detail: 'D',
  hint: 'H',
  position: 'P',
  internalPosition: 'p',
  internalQuery: 'q',
  where: 'W',
  schema: 's',
  table: 't',
  column: 'c',
  dataType: 'd',
  constraint: 'n',
  file: 'F',
  line: 'L',
  routine: 'R',
} as const;

export type ErrorFieldName = keyof typeof ErrorFieldCodes;
export type ErrorFields = { [K in ErrorFieldName]?: string } & { unknown?: Record<string, string> };

const fieldNameByCode: Record<string, ErrorFieldName> = Object.fromEntries(
  Object.entries(ErrorFieldCodes).map(([name, code]) => [code, name as ErrorFieldName]),
);

export function errorFieldName(code: string): ErrorFieldName | undefined {
  return fieldNameByCode[code];
}

export interface PgErrorOptions {
  detail?: string;
  hint?: string;
  /** Extra fields (e.g. from a backend ErrorResponse being relayed). */
  fields?: ErrorFields;
  cause?: unknown;
  /** PostgreSQL logs this and closes without a word to the client (its COMMERROR). */
  silent?: boolean;
}

export class PgError extends Error {
  readonly severity: Severity;
  readonly sqlstate: string;
  readonly detail?: string;
  readonly hint?: string;
  readonly fields?: ErrorFields;
  /** Close without sending an ErrorResponse, as PostgreSQL does for this error. */
  readonly silent: boolean;

  constructor(severity: Severity, sqlstate: string, message: string, options: PgErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PgError';
    this.severity = severity;
    this.sqlstate = sqlstate;
    this.detail = options.detail;
    this.hint = options.hint;
    this.fields = options.fields;
    this.silent = options.silent ?? false;
  }

  get fatal(): boolean {
    return this.severity === 'FATAL' || this.severity === 'PANIC';
  }

  /** The fields to put on the wire, in the order PostgreSQL itself sends them. */
  toFields(): ErrorFields {
    return {
      ...this.fields,
      severity: this.severity,
      severityV: this.severity,
      code: this.sqlstate,
      message: this.message,
      ...(this.detail !== undefined ? { detail: this.detail } : {}),
      ...(this.hint !== undefined ? { hint: this.hint } : {}),
    };
  }

  /** Rebuilds a PgError from a decoded ErrorResponse (e.g. a backend's), keeping every field. */
  static fromFields(fields: ErrorFields): PgError {
    const severity = (fields.severityV ?? fields.severity ?? 'ERROR') as Severity;
    return new PgError(severity, fields.code ?? SqlState.InternalError, fields.message ?? 'unknown error', {
      detail: fields.detail,
      hint: fields.hint,
      fields,
    });
  }
}

export function protocolViolation(message: string, detail?: string): PgError {
  return new PgError('FATAL', SqlState.ProtocolViolation, message, { detail });
}

/**
 * A startup packet PostgreSQL's ProcessStartupPacket rejects with COMMERROR: logged, connection
 * closed, nothing sent (an invalid length, a packet cut short, a cancel request of the wrong size).
 */
export function startupPacketRefused(message: string): PgError {
  return new PgError('FATAL', SqlState.ProtocolViolation, message, { silent: true });
}

/**
 * Bytes quoted in an error message: printable ASCII as is, anything else as `\xNN`, so a client's
 * garbage cannot put control characters or invalid text into logs and error messages.
 */
export function escapeBytes(s: string): string {
  return s.replace(/[^\x20-\x7e]|\\/g, (c) =>
    c === '\\' ? '\\\\' : [...Buffer.from(c, 'utf8')].map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join(''),
  );
}

/** A message header whose length field is impossible or over the limit (`code` is its type byte as a character). */
export function invalidMessageLength(code: string, length: number): PgError {
  return protocolViolation(`invalid message length ${length} for message type "${escapeBytes(code)}"`);
}

/** A message longer than the proxy will hold in memory (`--maxMessageSize`), though valid in the protocol. */
export function messageTooLong(code: string, length: number, limit: number): PgError {
  return new PgError('FATAL', SqlState.ProgramLimitExceeded, `message too long: type "${code}" declares ${length} bytes`, {
    detail: `Messages of this type are held whole in memory by the proxy, at most ${limit} bytes (--maxMessageSize).`,
  });
}

/** Turns anything thrown into a PgError without leaking internals to the client. */
export function asPgError(err: unknown, fallbackSeverity: Severity = 'FATAL'): PgError {
  if (err instanceof PgError) return err;
  return new PgError(fallbackSeverity, SqlState.InternalError, 'internal proxy error', { cause: err });
}
