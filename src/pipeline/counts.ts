import { BackendSpecs, FrontendSpecs, type BackendType, type FrontendType } from '../protocol/index.js';
import type { Middleware } from './middleware.js';

/** The type bytes a pipeline counts, per direction (1 = counted); absent for a direction that counts nothing. */
export interface CountedTypes {
  readonly frontend: Uint8Array | undefined;
  readonly backend: Uint8Array | undefined;
}

/** Per middleware list: every session of one configuration counts the same types. */
const countedByPipeline = new WeakMap<readonly Middleware[], CountedTypes | null>();

/** What `middleware` counts (`MessageInterest.count`), made once per list; undefined when nothing. */
export function countedTypes(middleware: readonly Middleware[]): CountedTypes | undefined {
  let counted = countedByPipeline.get(middleware);
  if (counted === undefined) {
    let frontend: Uint8Array | undefined;
    let backend: Uint8Array | undefined;
    for (const mw of middleware) {
      const count = mw.messages?.count;
      for (const t of count?.frontend ?? []) (frontend ??= new Uint8Array(256))[FrontendSpecs[t as FrontendType].code] = 1;
      for (const t of count?.backend ?? []) (backend ??= new Uint8Array(256))[BackendSpecs[t as BackendType].code] = 1;
    }
    counted = frontend || backend ? { frontend, backend } : null;
    countedByPipeline.set(middleware, counted);
  }
  return counted ?? undefined;
}

/**
 * The running counts of the types a session's middleware count (`MessageInterest.count`), by
 * direction: every message of such a type that passes the session is counted, whether it is only
 * counted, observed or delivered. Made only for a pipeline that counts something.
 */
export class MessageCounts {
  // Made when a direction counts something: most sessions count nothing, or in one direction.
  private readonly frontend: Float64Array | undefined;
  private readonly backend: Float64Array | undefined;
  // The pipeline's tables, held directly: read for every message that passes a counting session.
  private readonly frontendCounted: Uint8Array | undefined;
  private readonly backendCounted: Uint8Array | undefined;

  constructor(counted: CountedTypes) {
    this.frontendCounted = counted.frontend;
    this.backendCounted = counted.backend;
    if (counted.frontend) this.frontend = new Float64Array(256);
    if (counted.backend) this.backend = new Float64Array(256);
  }

  /** `n` client messages of type byte `code` passed. */
  readonly fromClient = (code: number, n = 1): void => {
    if (this.frontendCounted?.[code] === 1) this.frontend![code] += n;
  };

  /** `n` backend messages of type byte `code` passed. */
  readonly fromBackend = (code: number, n = 1): void => {
    if (this.backendCounted?.[code] === 1) this.backend![code] += n;
  };

  /** See `MiddlewareContext.messageCount`. */
  count(direction: 'frontend' | 'backend', type: FrontendType | BackendType): number {
    if (direction === 'frontend') {
      const spec = (FrontendSpecs as Record<string, { code: number }>)[type];
      return spec && this.frontend ? this.frontend[spec.code]! : 0;
    }
    const spec = (BackendSpecs as Record<string, { code: number }>)[type];
    return spec && this.backend ? this.backend[spec.code]! : 0;
  }
}
