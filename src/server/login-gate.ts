import type { LimitReason } from '../telemetry/metrics.js';

export interface PendingLoginLimits {
  /** Most connections logging in at once (not yet in the relay). */
  max: number;
  /** Most of those from one client address; 0 = no per-address limit. */
  perAddress: number;
}

/**
 * Counts connections that are logging in (from accept until their relay starts: PROXY header,
 * startup, authentication, backend login) apart from sessions, so that sockets which never log in
 * fill a budget of their own (`--maxPendingLogins`, and per client address) instead of the
 * session slots of `--maxConnections`.
 */
export class LoginGate {
  private total = 0;
  private readonly byAddress = new Map<string, number>();

  constructor(
    public limits: PendingLoginLimits,
    private readonly changed: (pending: number) => void = () => {},
  ) {}

  get pending(): number {
    return this.total;
  }

  /**
   * Takes a pending-login slot, counted against `address` unless it is undefined (not known yet:
   * with the PROXY protocol the client's address comes later, see `Pending.from`).
   */
  enter(address: string | undefined): Pending | LimitReason {
    if (this.total >= this.limits.max) return 'max_pending_logins';
    if (address !== undefined && this.full(address)) return 'max_pending_logins_per_address';
    this.total++;
    if (address !== undefined) this.add(address, 1);
    this.changed(this.total);
    return new Pending(this, address);
  }

  /** @internal */
  full(address: string): boolean {
    const per = this.limits.perAddress;
    return per > 0 && (this.byAddress.get(address) ?? 0) >= per;
  }

  /** @internal */
  add(address: string, n: number): void {
    const left = (this.byAddress.get(address) ?? 0) + n;
    if (left > 0) this.byAddress.set(address, left);
    else this.byAddress.delete(address);
  }

  /** @internal */
  leave(address: string | undefined): void {
    this.total--;
    if (address !== undefined) this.add(address, -1);
    this.changed(this.total);
  }
}

/** One connection's pending-login slot; `done` gives it back (once). */
export class Pending {
  private open = true;

  constructor(
    private readonly gate: LoginGate,
    private address: string | undefined,
  ) {}

  /** Counts the slot against the client address learnt late (PROXY header); false if over its budget. */
  from(address: string): boolean {
    if (!this.open || this.address !== undefined) return true;
    if (this.gate.full(address)) return false;
    this.address = address;
    this.gate.add(address, 1);
    return true;
  }

  done(): void {
    if (!this.open) return;
    this.open = false;
    this.gate.leave(this.address);
  }
}
