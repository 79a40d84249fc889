/**
 * Servers a test file started and has not stopped yet are stopped when the process ends — on
 * exit, an uncaught exception, or the test runner's SIGINT/SIGTERM — so a crashed test file
 * leaves nothing running behind it.
 */

/** What can be stopped synchronously (an exit hook cannot wait). */
export interface StoppableSync {
  stopSync(): void;
}

const live = new Set<StoppableSync>();

/** Stops `server` when the process ends, unless {@link forgetAtExit} is called first. */
export function stopAtExit(server: StoppableSync): void {
  live.add(server);
  installExitHooks();
}

export function forgetAtExit(server: StoppableSync): void {
  live.delete(server);
}

let hooksInstalled = false;

/**
 * 'exit' covers normal ends and uncaught exceptions. SIGINT/SIGTERM (e.g. the test runner
 * cancelling a file) end the process without 'exit', so we clean up and re-raise — but only
 * when no one else listens, because then the signal does not end the process anyway.
 */
function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.once('exit', stopAllSync);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    const onSignal = (): void => {
      if (process.listenerCount(signal) > 1) return;
      stopAllSync();
      process.removeListener(signal, onSignal);
      process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

function stopAllSync(): void {
  for (const server of [...live]) {
    try {
      server.stopSync();
    } catch {
      // Keep going: the others still need stopping.
    }
  }
}
