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
