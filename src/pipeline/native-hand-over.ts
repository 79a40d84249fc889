// Where the native carrier's hand-over (onBatches in native-carrier.ts) is: a carrier that ends
// inside one shows first what it observed later in it, its observed messages that C forwarded
// already (the ones of held batches it never forwards, so they are not shown either).
import { readTime, readTimeOf, setReadTime, stampNow } from './read-time.js';

/** A batch header's flag for a batch of observed messages only (mirror of native/carrier.h). */
export const B_OBSERVED_ONLY = 1 << 16;

/** A hand-over running: its batches (see onBatches), the clocks read at its start, and the batch it is at. */
export interface HandOver {
  readonly count: number;
  readonly values: readonly unknown[];
  readonly buffer: Buffer;
  readonly now: number;
  readonly nowStamp: number;
  /** The batch being handed over, and where its header is on the tape. */
  batch: number;
  at: number;
  readonly outer: HandOver | undefined;
}

let current: HandOver | undefined;
/** The tape entry being shown in the current batch (set by NativeCarrier.batch). */
export const cursor = { entry: 0 };

/** A hand-over starts (one may start inside another: a carrier fed from JavaScript, see feed_batch). */
export function beginHandOver(count: number, values: readonly unknown[], buffer: Buffer): HandOver {
  current = { count, values, buffer, now: performance.now(), nowStamp: stampNow(), batch: 0, at: 0, outer: current };
  return current;
}

export function endHandOver(h: HandOver): void {
  current = h.outer;
}

/**
 * For `carrier`, ending now: each of its observed-only batches after the current tape entry of
 * the running hand-over, as `show(direction, region, first entry, entries, assembled)`, with the
 * read time of each. The cursor and the read time are as they were after.
 */
export function observedLeft(
  tape: Uint32Array,
  carrier: unknown,
  show: (direction: number, region: Buffer, first: number, count: number, assembled: ArrayBuffer | undefined) => void,
): void {
  const h = current;
  if (!h) return;
  const [entry, time] = [cursor.entry, readTime()];
  for (let b = h.batch, at = h.at; b < h.count; b++) {
    const head = tape[3 * at]!;
    const entries = tape[3 * at + 1]!;
    if (h.values[2 * b] === carrier && (head & B_OBSERVED_ONLY) !== 0) {
      const from = b === h.batch ? Math.max(entry + 1, at + 1) : at + 1;
      setReadTime(readTimeOf(tape[3 * at + 2]!, h.now, h.nowStamp));
      show(head & 0xff, h.buffer, from, at + 1 + entries - from, h.values[2 * b + 1] as ArrayBuffer | undefined);
    }
    at += 1 + entries;
  }
  cursor.entry = entry;
  setReadTime(time);
}
