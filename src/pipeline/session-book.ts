import {
  backendFlags,
  backendMessage,
  BE_ENDS_ERROR,
  BE_ENDS_OK,
  BE_KEEPS_LAST_WORD,
  BE_READY,
  BE_REPORTS_ERROR,
  FE_AWAITS_READY,
  FE_CLOSES_BATCH,
  FE_EXTENDED,
  FE_STARTS_STATEMENT,
  FE_TERMINATES,
  frontendFlags,
  leavingSeverity,
  type TransactionStatus,
} from '../protocol/index.js';

/** How statement durations leave a carrier (to the metrics), without any message content. */
export interface StatementTimings {
  statement(seconds: number, ok: boolean): void;
  /** Registers `drain`, to be called before the timings are read (e.g. at a scrape); returns its removal. */
  pull(drain: () => void): () => void;
}

/**
 * The JavaScript carrier's bookkeeping of a session, from type bytes and the protocol table
 * (protocol/meanings.ts) — the native carrier keeps the same in C (native/framing.c). Requests are
 * counted as they are read from the client, answers and statement ends as they are read from
 * the backend, ReadyForQuery and Terminate as they are written.
 */
export class SessionBook {
  transactionStatus: TransactionStatus = 'I';
  unanswered = 0;
  /** Terminate reached the backend. */
  terminated = false;
  /** The backend's last message (notices and ReadyForQuery aside) was an ErrorResponse saying it leaves. */
  backendSaidFatal = false;
  /** Extended-protocol messages went to the backend since the last Sync. */
  batchOpen = false;
  private idleWatch: (() => void) | null = null;
  private starts: number[] = [];
  private head = 0;

  constructor(private readonly timings?: StatementTimings) {}

  /** Calls `onIdle` (once) at the next ReadyForQuery that leaves the session idle. */
  watchIdle(onIdle: () => void): void {
    this.idleWatch = onIdle;
  }

  get idle(): boolean {
    return this.transactionStatus === 'I' && this.unanswered === 0;
  }

  /** A message read from the client. */
  fromClient(code: number): void {
    if (frontendFlags[code]! & FE_AWAITS_READY) this.unanswered++;
  }

  /** A message read from the backend, `source[offset, offset + length)`. */
  fromBackend(code: number, source: Buffer, offset: number, length: number): void {
    const flags = backendFlags[code]!;
    if (flags & BE_REPORTS_ERROR) this.backendSaidFatal = saysLeaving(code, source, offset, length);
    else if (!(flags & BE_KEEPS_LAST_WORD)) this.backendSaidFatal = false;
    if (!this.timings) return;
    if (flags & BE_ENDS_OK) this.statementDone(true);
    else if (flags & BE_ENDS_ERROR) this.statementDone(false);
    // Executes skipped after an error never ran: nothing to count.
    else if (flags & BE_READY) {
      this.starts = [];
      this.head = 0;
    }
  }

  /** A message written to the backend. */
  toBackend(code: number): void {
    const flags = frontendFlags[code]!;
    if (flags & FE_TERMINATES) this.terminated = true;
    if (flags & FE_EXTENDED) this.batchOpen = true;
    if (flags & FE_CLOSES_BATCH) this.batchOpen = false;
    if (flags & FE_STARTS_STATEMENT && this.timings) this.starts.push(performance.now());
  }

  /** A ReadyForQuery was written to the client. */
  ready(status: TransactionStatus): void {
    this.transactionStatus = status;
    if (this.unanswered > 0) this.unanswered--;
    const watch = this.idleWatch;
    if (watch && this.idle) {
      this.idleWatch = null;
      watch();
    }
  }

  private statementDone(ok: boolean): void {
    if (this.head >= this.starts.length) return;
    const started = this.starts[this.head++]!;
    if (this.head === this.starts.length) {
      this.starts = [];
      this.head = 0;
    }
    this.timings!.statement((performance.now() - started) / 1000, ok);
  }
}

function saysLeaving(code: number, source: Buffer, offset: number, length: number): boolean {
  const m = backendMessage(code, source, offset, length);
  try {
    return m.type === 'ErrorResponse' && leavingSeverity(m.body());
  } catch {
    return false;
  }
}
