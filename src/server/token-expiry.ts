import { be, PgError, SqlState } from '../protocol/index.js';
import type { Session } from '../pipeline/session.js';

export interface ExpiryPolicy {
  /** `close` ends the session at its first idle point after expiry; `ignore` lets it run. */
  mode: 'close' | 'ignore';
  toleranceMs: number;
  /** How long before expiry the client is warned with a NoticeResponse (0: no warning). */
  warningMs: number;
  /** Told each time expiry closes a session (`pgward_sessions_closed_total{reason="expired"}`). */
  closed?(): void;
}

/** Largest delay setTimeout accepts; later deadlines are re-armed in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Sessions waiting for one moment (typically one token's `exp`, shared by all its sessions). */
interface Deadline {
  timer?: NodeJS.Timeout;
  due: Set<() => void>;
}

/**
 * One timer per distinct moment, however many sessions wait for it: a login with a token many
 * sessions share (a CI job's, a service's) joins its deadline instead of arming a timer (and a
 * timer list of its own, for its own delay) per session.
 */
const deadlines = new Map<number, Deadline>();

function at(when: number, fn: () => void): () => void {
  if (when - Date.now() <= 0) {
    fn();
    return NOTHING_TO_CANCEL;
  }
  let deadline = deadlines.get(when);
  if (!deadline) {
    const made: Deadline = { due: new Set() };
    deadlines.set(when, made);
    arm(when, made);
    deadline = made;
  }
  // `fn` is made per watch, so it is its own entry in the set.
  const joined = deadline;
  joined.due.add(fn);
  return () => {
    if (!joined.due.delete(fn) || joined.due.size > 0) return;
    clearTimeout(joined.timer);
    if (deadlines.get(when) === joined) deadlines.delete(when);
  };
}

function arm(when: number, deadline: Deadline): void {
  const delay = when - Date.now();
  if (delay <= 0) return fire(when, deadline);
  deadline.timer = setTimeout(() => (delay > MAX_TIMER_MS ? arm(when, deadline) : fire(when, deadline)), Math.min(delay, MAX_TIMER_MS));
  deadline.timer.unref();
}

function fire(when: number, deadline: Deadline): void {
  if (deadlines.get(when) === deadline) deadlines.delete(when);
  const due = [...deadline.due];
  deadline.due.clear();
  for (const fn of due) fn();
}

/**
 * Watches a session whose credential expires at `expiresAt` (ms): warns the client, then closes
 * the session with FATAL 28P01 "token expired" as soon as it is idle (a transaction may finish).
 * Returns a function that cancels the watch.
 */
export function watchExpiry(session: Session, expiresAt: number, policy: ExpiryPolicy): () => void {
  if (policy.mode === 'ignore') return NOTHING_TO_CANCEL;
  const stopWarning = policy.warningMs > 0 ? at(expiresAt - policy.warningMs, () => warnExpiring(session, expiresAt)) : undefined;
  const stopClose = at(expiresAt + policy.toleranceMs, () => {
    session.log.info('token expired', { identity: session.identity });
    session.state.whenIdle(() => {
      // The client may have left while the session waited to become idle: nothing to close then.
      if (session.state.phase === 'closed') return;
      session.close(new PgError('FATAL', SqlState.InvalidPassword, 'token expired', { hint: 'Reconnect with a fresh token.' }));
      policy.closed?.();
    });
  });
  if (!stopWarning) return stopClose;
  return () => {
    stopWarning();
    stopClose();
  };
}

const NOTHING_TO_CANCEL = (): void => {};

function warnExpiring(session: Session, expiresAt: number): void {
  const seconds = Math.max(0, Math.round((expiresAt - Date.now()) / 1000));
  session.notifyClient(
    be.noticeResponse({
      severity: 'WARNING',
      severityV: 'WARNING',
      code: '01000',
      message: `token expires in ${seconds} s; the session will be closed when it is idle after that`,
      hint: 'Reconnect with a fresh token.',
    }),
  );
}
