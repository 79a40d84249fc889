import { fe, Limits, PgError, SqlState } from '../protocol/index.js';
import { BackendLost, exchange, sync } from './exchange.js';
import { parameterAsk, resetRequest, sameParameters, type ParameterAsk } from './pool-params.js';
import { waitForSlot, type Waiter } from './pool-wait.js';
import { lookAtIdle } from './liveness.js';
import { onNativeEndpoint } from './pooled-endpoint.js';
import { unparkReading } from '../transport/own-read.js';
import type { Lease, PoolOptions, PoolRequest, PoolStats } from './pool-types.js';
import { asBackendRefusal, connectBackend, type BackendConnection } from './login.js';
import { poolSettings, samePoolSettings, type PoolOverride, type PoolSettings } from './pool-settings.js';
import type { BackendTarget } from './url.js';
import { targetKey, targetLabel } from './pool-target.js';

export type { AcquireResult, Lease, PoolEvents, PoolOptions, PoolRequest, PoolStats } from './pool-types.js';

const DEFAULT_EXCHANGE_TIMEOUT_MS = 10_000;
/**
 * A connection idle longer than this gets a round trip before it is handed out (as PgBouncer's
 * `server_check_delay`, 30 s there): the look at its socket sees a close or a FATAL, not a
 * network cut, so it vouches only for connections in use moments ago, where reuse saves the most.
 */
const DEFAULT_CHECK_AFTER_MS = 5_000;

/**
 * Logged-in backend connections kept per target and handed to the next session for the same
 * target (SPEC §8). A target is everything that decides who a connection is on the backend: host,
 * port, user, database, TLS settings, the target's own startup parameters, and the credential's
 * source. The pool knows nothing of clients or tokens.
 */
export class BackendPool {
  private readonly pools = new Map<string, TargetPool>();
  private settings: PoolSettings;
  /** Settings per backends-file override (shared by its targets), merged once per configuration, not per login. */
  private merged = new WeakMap<PoolOverride, PoolSettings>();
  /** The global settings, checked (what a target without an override gets). */
  private global: PoolSettings;
  private closing = false;

  constructor(private readonly opts: PoolOptions) {
    this.settings = opts.settings;
    this.global = poolSettings(opts.settings);
  }

  /** The settings that apply to `target` (the global ones with its backends-file entry's on top). */
  settingsFor(target: BackendTarget): PoolSettings {
    const override = target.pool;
    if (!override) return this.global;
    let settings = this.merged.get(override);
    if (!settings) this.merged.set(override, (settings = poolSettings(this.settings, override)));
    return settings;
  }

  /** A connection for `target`: an idle one if there is one, else a new one (waiting while the target is full). */
  acquire(target: BackendTarget, request: PoolRequest): Promise<Lease> {
    if (this.closing) return Promise.reject(new PgError('FATAL', SqlState.AdminShutdown, 'pgward is shutting down'));
    const key = targetKey(target);
    let pool = this.pools.get(key);
    if (!pool || pool.isRetired) {
      const made: TargetPool = new TargetPool(target, this.settingsFor(target), this.opts, () => {
        if (this.pools.get(key) === made) this.pools.delete(key);
      });
      this.pools.set(key, made);
      pool = made;
    }
    return pool.acquire(request);
  }

  /** Opens idle connections until `target` has `count` (at most its maxIdle), as `warm` asks. */
  async warm(target: BackendTarget, request: PoolRequest, count: number): Promise<number> {
    let opened = 0;
    const leases: Lease[] = [];
    try {
      for (let i = 0; i < count; i++) {
        const lease = await this.acquire(target, request);
        leases.push(lease);
        if (lease.fresh) opened++;
      }
    } finally {
      for (const lease of leases) lease.release(true);
    }
    return opened;
  }

  stats(): PoolStats[] {
    return [...this.pools.values()].map((p) => p.stats());
  }

  /**
   * A reload: new global settings; targets whose backends-file entry changed or vanished
   * (`keeps(routeId)` false), or whose settings changed, have their idle connections closed and
   * are not reused again (their live sessions are untouched; their connections close at the end).
   */
  reconfigure(settings: PoolSettings, keeps: (routeId: string | undefined) => boolean): void {
    this.settings = settings;
    this.merged = new WeakMap();
    this.global = poolSettings(settings);
    for (const pool of this.pools.values()) {
      const same = keeps(pool.routeId) && samePoolSettings(pool.settings, poolSettings(settings, pool.override));
      if (!same) pool.retire('configuration changed');
    }
  }

  /** SIGTERM: idle connections are closed now, and every connection when its session ends. */
  close(): void {
    this.closing = true;
    for (const pool of this.pools.values()) pool.retire('shutting down');
  }
}

interface Pooled {
  connection: BackendConnection;
  born: number;
  /** When it last went idle. */
  idleSince: number;
  /** The session parameters set on it after its last reset (see pool-params.ts). */
  applied?: ReadonlyMap<string, string>;
  /** Undoes what watches an idle connection (listeners, expiry timer); `handOn`: read on at once (see `exchange`). */
  unwatch?: (handOn?: boolean) => void;
}

/** The connections of one target. */
class TargetPool {
  readonly label: string;
  readonly routeId: string | undefined;
  readonly override: BackendTarget['pool'];
  private readonly idle: Pooled[] = [];
  private readonly waiters: Waiter[] = [];
  /** Every connection of this target: idle, lent, being opened or reset. */
  private size = 0;
  /** Connections being reset: each will be idle in a moment (or closed). */
  private resetting = 0;
  private retired = false;

  constructor(
    private readonly target: BackendTarget,
    readonly settings: PoolSettings,
    private readonly opts: PoolOptions,
    private readonly forget: () => void,
  ) {
    this.label = targetLabel(target);
    this.routeId = target.routeId;
    this.override = target.pool;
  }

  get isRetired(): boolean {
    return this.retired;
  }

  stats(): PoolStats {
    const idle = this.idle.length;
    return { target: this.label, active: this.size - idle, idle, waiting: this.waiters.length, maxSize: this.settings.maxSize };
  }

  async acquire(request: PoolRequest): Promise<Lease> {
    const started = performance.now();
    const deadline = Date.now() + this.settings.waitTimeoutMs;
    for (;;) {
      const taken = this.takeIdle(request.apply);
      if (taken) {
        if (!taken.ask || (await this.prepare(taken.pooled, taken.ask, true))) return this.lend(taken.pooled, false, started, request.apply);
        continue;
      }
      // A connection being reset is ready sooner than a new login would be.
      const soonIdle = this.resetting > this.waiters.length;
      if (this.size < this.settings.maxSize && !soonIdle) {
        const fresh = await this.open(request);
        const ask = parameterAsk(request.apply, undefined, fresh.connection.parameters, this.settings.reset);
        if (!ask || (await this.prepare(fresh, ask, false))) return this.lend(fresh, true, started, request.apply);
        throw new PgError('FATAL', SqlState.ConnectionFailure, 'backend connection closed during login');
      }
      if (!(await waitForSlot(this.waiters, deadline, request.signal))) {
        this.opts.events?.acquired?.(this.label, 'timeout', (performance.now() - started) / 1000);
        throw new PgError('FATAL', SqlState.TooManyConnections, `too many backend connections for ${this.label}`, {
          detail: `All ${this.settings.maxSize} connections of this target were in use for ${this.settings.waitTimeoutMs} ms.`,
          hint: 'Try again later, or raise pool.maxSize (and the backend\'s max_connections).',
        });
      }
    }
  }

  private async open(request: PoolRequest): Promise<Pooled> {
    this.size++;
    try {
      const connect = this.opts.connect ?? connectBackend;
      const connection = await connect(this.target, { params: request.params, password: request.password, signal: request.signal });
      const now = Date.now();
      return { connection, born: now, idleSince: now };
    } catch (err) {
      this.dropped();
      throw err;
    }
  }

  /**
   * Sends `ask` (the session's parameters with `set_config`, after the reset again when another
   * session's are set, or a Sync that only proves a reused connection alive) and reads the answer.
   * False: the connection was lost or its reset failed (and it is closed). A refusal of the
   * parameters is thrown as the session's FATAL error; the connection, still clean, is kept.
   */
  private async prepare(pooled: Pooled, ask: ParameterAsk, reused: boolean): Promise<boolean> {
    const { connection } = pooled;
    let result;
    try {
      result = await exchange(connection, ask.requests, ask.requests.length, this.opts.exchangeTimeoutMs ?? DEFAULT_EXCHANGE_TIMEOUT_MS);
    } catch (err) {
      if (!(err instanceof BackendLost)) throw err;
      this.close(pooled, reused ? 'lost while idle' : err.why);
      return false;
    }
    if (result.error) {
      const e = result.error;
      if (ask.resets && result.erredAt === 0) {
        this.close(pooled, `reset failed: ${e.sqlstate}`);
        return false;
      }
      pooled.applied = undefined;
      this.keep(pooled);
      throw asBackendRefusal(new PgError('FATAL', e.sqlstate, e.message, { detail: e.detail, hint: e.hint }));
    }
    if (result.status === 'I') return true;
    this.close(pooled, `not idle after applying parameters (${result.status})`);
    return false;
  }

  private lend(pooled: Pooled, fresh: boolean, started: number, applied: ReadonlyMap<string, string>): Lease {
    // The same map as long as the parameters stay the same: its reset request is built once.
    if (!pooled.applied || !sameParameters(pooled.applied, applied)) pooled.applied = applied;
    this.opts.events?.acquired?.(this.label, fresh ? 'new' : 'reused', (performance.now() - started) / 1000);
    let returned = false;
    return {
      connection: pooled.connection,
      fresh,
      release: (reusable, parameters) => {
        if (returned) return;
        returned = true;
        // By key: an entry iteration would make an array per parameter.
        if (parameters) for (const k of parameters.keys()) pooled.connection.parameters.set(k, parameters.get(k)!);
        if (reusable && this.reusable(pooled)) void this.reset(pooled);
        else this.close(pooled, reusable ? 'not reused' : 'session did not end cleanly');
      },
    };
  }

  private reusable(pooled: Pooled): boolean {
    return !this.retired && this.settings.mode === 'session' && Date.now() - pooled.born < this.settings.maxLifetimeMs;
  }

  /** Runs the reset statement; a connection it does not leave idle and clean is closed. */
  private async reset(pooled: Pooled): Promise<void> {
    const { connection } = pooled;
    // What the last session's relay set up for its reads (streaming to its client) goes with it.
    connection.framer.bound({ maxAssembled: Limits.assembledMessage });
    connection.leftover.length = 0;
    // The carrier left it reading into 64 bytes: the reset's answer is more (one read, not two).
    unparkReading(connection.socket);
    this.resetting++;
    try {
      // Read on after it: `keep` watches the connection (or closes it) as this continuation runs.
      const request = resetRequest(this.settings.reset, pooled.applied);
      const result = await exchange(connection, [request.raw], request.readies, this.opts.exchangeTimeoutMs ?? DEFAULT_EXCHANGE_TIMEOUT_MS, true);
      if (result.error || result.status !== 'I') return this.close(pooled, `reset failed${result.error ? `: ${result.error.sqlstate}` : ''}`);
    } catch (err) {
      return this.close(pooled, `lost during reset (${(err as BackendLost).why ?? 'error'})`);
    } finally {
      this.resetting--;
    }
    // Nothing may be left over from the reset for the next session to see.
    connection.leftover.length = 0;
    this.keep(pooled);
  }

  /** Puts a clean connection back among the idle ones, or closes it when there are enough. */
  private keep(pooled: Pooled): void {
    if (this.retired || !this.reusable(pooled) || this.idle.length >= this.settings.maxIdle) {
      return this.close(pooled, this.retired ? 'retired' : 'idle pool full or too old');
    }
    const moved = onNativeEndpoint(pooled.connection.socket);
    if (moved) pooled.connection.socket = moved;
    pooled.idleSince = Date.now();
    this.idle.push(pooled);
    this.watch(pooled);
    this.wakeOne();
  }

  /**
   * The most recently used idle connection still fit for use, and what to ask it before it is
   * handed out: the session's parameters when they are not in place (see pool-params.ts; a round
   * trip that also proves it alive), a Sync when they are and it cannot be vouched for without
   * one, or nothing when a look at its descriptor finds it open and quiet after a short idle
   * (SPEC §8: one that died while idle is never handed out; as PgBouncer's `server_check_delay`,
   * one idle longer is asked).
   */
  private takeIdle(apply: ReadonlyMap<string, string>): { pooled: Pooled; ask: ParameterAsk | undefined } | undefined {
    for (let pooled = this.idle.pop(); pooled; pooled = this.idle.pop()) {
      if (!this.reusable(pooled) || pooled.connection.socket.destroyed) {
        this.close(pooled, 'too old');
        continue;
      }
      let ask = parameterAsk(apply, pooled.applied, pooled.connection.parameters, this.settings.reset);
      if (!ask) {
        const look = Date.now() - pooled.idleSince < (this.opts.checkAfterMs ?? DEFAULT_CHECK_AFTER_MS) ? (this.opts.lookAtIdle ?? lookAtIdle)(pooled.connection.socket) : undefined;
        if (look === 'gone') {
          this.close(pooled, 'closed by the backend while idle');
          continue;
        }
        if (look === undefined) ask = { requests: [sync()], resets: false };
      }
      // One that is asked is read on at once (`prepare`'s exchange): it is not paused between.
      pooled.unwatch?.(ask !== undefined);
      pooled.unwatch = undefined;
      return { pooled, ask };
    }
    return undefined;
  }

  /** An idle connection that says anything, closes or fails is gone; one unused too long is closed. */
  private watch(pooled: Pooled): void {
    const { socket } = pooled.connection;
    const gone = () => this.close(pooled, 'closed by the backend while idle');
    socket.on('data', gone);
    socket.on('end', gone);
    socket.on('close', gone);
    socket.on('error', gone);
    socket.resume();
    const expiresIn = Math.min(this.settings.idleTimeoutMs, pooled.born + this.settings.maxLifetimeMs - Date.now());
    const timer = setTimeout(() => this.close(pooled, 'idle timeout'), Math.max(0, expiresIn));
    timer.unref();
    pooled.unwatch = (handOn) => {
      clearTimeout(timer);
      if (!handOn) socket.pause();
      socket.off('data', gone);
      socket.off('end', gone);
      socket.off('close', gone);
      socket.off('error', gone);
    };
  }

  private close(pooled: Pooled, why: string): void {
    const at = this.idle.indexOf(pooled);
    if (at >= 0) this.idle.splice(at, 1);
    pooled.unwatch?.();
    pooled.unwatch = undefined;
    const { socket } = pooled.connection;
    if (!socket.destroyed) {
      if (socket.writable && !socket.writableEnded) socket.end(fe.terminate().raw);
      setTimeout(() => socket.destroy(), 1000).unref();
    }
    this.opts.events?.closed?.(this.label, why);
    this.dropped();
  }

  /** One connection fewer: a waiter may open one now. */
  private dropped(): void {
    this.size--;
    this.wakeOne();
    if (this.size === 0 && this.waiters.length === 0 && this.retired) this.forget();
  }

  private wakeOne(): void {
    this.waiters.shift()?.wake();
  }

  /** Closes the idle connections now; lent ones close when their sessions end. */
  retire(why: string): void {
    this.retired = true;
    for (const pooled of [...this.idle]) this.close(pooled, why);
    if (this.size === 0) this.forget();
  }
}
