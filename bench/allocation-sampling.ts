/**
 * V8's sampling heap profiler in this process, as the bench's allocation counts use it
 * (login-profile's LOGIN_ALLOC through bench/alloc-sampler.ts, query-log-cost's QLOG_ALLOC):
 * counting the objects the garbage collector has already taken too — without them short-lived
 * garbage, most of what a login or a statement allocates, would not show.
 */
import { Session } from 'node:inspector';
import type { HeapProfile } from './heapprofile-summary.js';

export class AllocationSampler {
  private readonly session = new Session();

  constructor() {
    this.session.connect();
  }

  /**
   * Starts sampling every `intervalBytes` bytes allocated (on average). `survivorsOnly`: leave out
   * what a scavenge collected, so the profile shows what outlived the young generation (promoted,
   * or still young when sampling stops) — what makes scavenges copy and mark-compacts run.
   */
  async start(intervalBytes: number, survivorsOnly = false): Promise<void> {
    await this.post('HeapProfiler.startSampling', {
      samplingInterval: intervalBytes,
      includeObjectsCollectedByMinorGC: !survivorsOnly,
      includeObjectsCollectedByMajorGC: true,
    });
  }

  /** Stops sampling: what was allocated since `start`. */
  async stop(): Promise<HeapProfile> {
    const { profile } = await this.post<{ profile: HeapProfile }>('HeapProfiler.stopSampling');
    return profile;
  }

  disconnect(): void {
    this.session.disconnect();
  }

  private post<T>(method: string, params?: object): Promise<T> {
    return new Promise((resolve, reject) => this.session.post(method, params, (err, result) => (err ? reject(err) : resolve(result as T))));
  }
}
