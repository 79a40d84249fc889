import type { Observable } from 'rxjs';
import type { Middleware } from '../pipeline/middleware.js';
import type { Logger } from '../telemetry/log.js';
import { drainGate } from './drain-gate.js';
import { BUILTIN_MIDDLEWARE } from './index.js';

export const BUILTIN_MIDDLEWARE_NAMES: ReadonlySet<string> = new Set([...Object.keys(BUILTIN_MIDDLEWARE), 'drain-gate']);

export interface BuiltinServices {
  draining$: Observable<boolean>;
  log: Logger;
  /** Told when `drain-gate` closes a session. */
  drainClosed?(sessionId: string): void;
}

/** Every built-in middleware factory by pipeline name, bound to the process's services. */
export function builtinMiddleware(services: BuiltinServices): Map<string, (options: unknown) => Middleware> {
  const map = new Map<string, (options: unknown) => Middleware>(Object.entries(BUILTIN_MIDDLEWARE));
  map.set('drain-gate', (options) => {
    if (options !== undefined && options !== null && (typeof options !== 'object' || Object.keys(options).length > 0)) {
      throw new Error('drain-gate: takes no options (the grace period is --gracePeriod)');
    }
    return drainGate(services.draining$, services.drainClosed);
  });
  return map;
}
