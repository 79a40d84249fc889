/** A session waiting for a connection of a full target. */
export interface Waiter {
  wake(): void;
}

/** Waits in `waiters` until a connection is kept or closed (`wake`); false at the deadline. */
export function waitForSlot(waiters: Waiter[], deadline: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const waiter: Waiter = { wake: () => resolve(settle(true)) };
    const timer = setTimeout(() => resolve(settle(false)), Math.max(0, deadline - Date.now()));
    const onAbort = () => reject(settle(signal?.reason ?? new Error('aborted')));
    const settle = <T>(outcome: T): T => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      const at = waiters.indexOf(waiter);
      if (at >= 0) waiters.splice(at, 1);
      return outcome;
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    waiters.push(waiter);
  });
}
