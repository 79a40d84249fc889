import { BackendSpecs, FrontendSpecs, type BackendType, type FrontendType } from '../protocol/index.js';

/**
 * The running counts of the types a session's middleware count (`MessageInterest.count`), by
 * direction: every message of such a type that passes the session is counted, whether it is only
 * counted, observed or delivered. Made only for a pipeline that counts something.
 */
export class MessageCounts {
  /** Whether a type byte is counted, per direction. */
  readonly frontendCounted = new Uint8Array(256);
  readonly backendCounted = new Uint8Array(256);
  // Made when a direction counts something: most sessions count nothing, or in one direction.
  private frontend: Float64Array | undefined;
  private backend: Float64Array | undefined;

  countFrontend(types: readonly FrontendType[]): void {
    for (const t of types) this.frontendCounted[FrontendSpecs[t].code] = 1;
    this.frontend ??= new Float64Array(256);
  }

  countBackend(types: readonly BackendType[]): void {
    for (const t of types) this.backendCounted[BackendSpecs[t].code] = 1;
    this.backend ??= new Float64Array(256);
  }

  /** `n` client messages of type byte `code` passed. */
  readonly fromClient = (code: number, n = 1): void => {
    if (this.frontendCounted[code] === 1) this.frontend![code] += n;
  };

  /** `n` backend messages of type byte `code` passed. */
  readonly fromBackend = (code: number, n = 1): void => {
    if (this.backendCounted[code] === 1) this.backend![code] += n;
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
