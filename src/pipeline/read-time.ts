// When the messages a carrier is delivering were read (MiddlewareContext.readTime): set by the
// carrier around a delivery, which is synchronous, so one value serves the whole process.

let current: number | undefined;

/** When the message being delivered was read, in `performance.now()` milliseconds; outside a delivery, now. */
export function readTime(): number {
  return current ?? performance.now();
}

/** Set by a carrier before it delivers what it read at `time`, and back to `undefined` after. */
export function setReadTime(time: number | undefined): void {
  current = time;
}

// The native carrier stamps a batch with uv_hrtime in µs mod 2^32 (process.hrtime's clock).
const WRAP = 2 ** 32;

/** Now on the native carrier's stamp clock (see native/carrier.h). */
export function stampNow(): number {
  const [seconds, nanos] = process.hrtime();
  return (seconds * 1e6 + Math.floor(nanos / 1000)) % WRAP;
}

/**
 * A batch's read time (`stamp`) in performance.now() milliseconds, knowing that `now` is
 * `nowStamp` on the stamp clock. A stamp that looks later than now (the two clocks read a moment
 * apart) is now.
 */
export function readTimeOf(stamp: number, now: number, nowStamp: number): number {
  const ago = (nowStamp - stamp + WRAP) % WRAP;
  return ago > WRAP / 2 ? now : now - ago / 1000;
}
