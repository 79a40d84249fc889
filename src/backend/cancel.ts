import { randomInt, timingSafeEqual } from 'node:crypto';
import { encodeCancelRequest } from '../protocol/index.js';
import { dialBackend } from './dial.js';
import { ownedProcessId, ownerOf, RANDOM_PROCESS_ID_LIMIT, type CancelKey } from './cancel-key.js';
import type { BackendTarget } from './url.js';
import { pooledRandomBytes } from '../util/random-pool.js';

export type { CancelKey };

interface Entry {
  proxyKey: CancelKey;
  /** Unset while the session has no backend yet (a reserved key): cancels are then ignored. */
  backendKey?: CancelKey;
  target?: BackendTarget;
  /** Whether the session's own backend connection used TLS: cancels then go over TLS too. */
  tls: boolean;
}

/** Where a CancelRequest went: a local session's backend, a peer instance, or nowhere. */
export type CancelOutcome = 'backend' | 'peer' | 'unknown';

export interface CancelRegistryOptions {
  /** With peers: this instance's id, carried in the top bits of every process id it issues. */
  instanceId?: number;
  /** Sends keys another instance owns to that instance; resolves whether the owner knew the key. */
  remote?: { forward(key: CancelKey): Promise<boolean> };
}

/**
 * Maps the cancel keys pgward hands to clients onto the backends' own keys. Clients never see a
 * backend's secret, so a cancel can only reach a backend through a session pgward knows.
 *
 * The process id a client is given is its backend's own (so `pg_backend_pid()`, notifications'
 * process id and `pg_terminate_backend(<my pid>)` agree with it) with a secret pgward chooses.
 * Two exceptions keep a random id: with `peers:` the id carries the issuing instance in its top
 * bits, and a key reserved before the backend is connected (auth providers that answer the
 * handshake themselves) cannot know the pid yet. Sessions on different backends may share a pid;
 * the secret tells them apart.
 */
export class CancelRegistry {
  private readonly byPid = new Map<number, Entry[]>();
  private count = 0;

  constructor(private readonly opts: CancelRegistryOptions = {}) {}

  /** Issues a key for a connected session: the backend's pid (random with peers) and a fresh secret (4 bytes for protocol 3.0, 32 for 3.2). */
  register(backendKey: CancelKey, target: BackendTarget, tls: boolean, secretLength = 4): CancelKey {
    const proxyKey = this.opts.instanceId ? this.reserve(secretLength) : this.add(backendKey.processId, secretLength);
    this.bind(proxyKey, backendKey, target, tls);
    return proxyKey;
  }

  /** Issues a key, with a random process id, before the session has a backend; `bind` it once connected. */
  reserve(secretLength = 4): CancelKey {
    let processId: number;
    const id = this.opts.instanceId;
    do processId = id ? ownedProcessId(id, randomInt(1, RANDOM_PROCESS_ID_LIMIT)) : randomInt(1, 0x7fffffff);
    while (this.byPid.has(processId));
    return this.add(processId, secretLength);
  }

  private add(processId: number, secretLength: number): CancelKey {
    const entries = this.byPid.get(processId) ?? [];
    let secretKey: Buffer;
    do secretKey = pooledRandomBytes(secretLength);
    while (entries.some((e) => e.proxyKey.secretKey.equals(secretKey)));
    const proxyKey = { processId, secretKey };
    entries.push({ proxyKey, tls: false });
    this.byPid.set(processId, entries);
    this.count++;
    return proxyKey;
  }

  private entry(key: CancelKey): Entry | undefined {
    return this.byPid.get(key.processId)?.find((e) => e.proxyKey.secretKey.equals(key.secretKey));
  }

  bind(proxyKey: CancelKey, backendKey: CancelKey, target: BackendTarget, tls: boolean): void {
    const e = this.entry(proxyKey);
    if (e) Object.assign(e, { backendKey, target, tls });
  }

  unregister(key: CancelKey): void {
    const entries = this.byPid.get(key.processId);
    const e = this.entry(key);
    if (!entries || !e) return;
    entries.splice(entries.indexOf(e), 1);
    this.count--;
    if (entries.length === 0) this.byPid.delete(key.processId);
  }

  get size(): number {
    return this.count;
  }

  /** The backend entry for a client's key, every secret with that pid compared in constant time; undefined if unknown. */
  lookup(key: CancelKey): { backendKey: CancelKey; target: BackendTarget; tls: boolean } | undefined {
    let found: Entry | undefined;
    for (const e of this.byPid.get(key.processId) ?? []) {
      const a = e.proxyKey.secretKey;
      const b = key.secretKey;
      if (a.length === b.length && timingSafeEqual(a, b)) found = e;
    }
    if (!found?.backendKey || !found.target) return undefined;
    return { backendKey: found.backendKey, target: found.target, tls: found.tls };
  }

  /** Sends a cancel to the backend of one of this instance's sessions; false when the key is unknown here. */
  async forwardLocally(key: CancelKey): Promise<boolean> {
    const e = this.lookup(key);
    if (!e) return false;
    await sendCancel(e.target, e.tls, e.backendKey);
    return true;
  }

  /** A client's CancelRequest: to the local backend, or to the peer that issued the key. */
  async forward(key: CancelKey): Promise<CancelOutcome> {
    if (await this.forwardLocally(key)) return 'backend';
    const { instanceId, remote } = this.opts;
    if (instanceId && remote && ownerOf(key.processId) !== instanceId && (await remote.forward(key))) return 'peer';
    return 'unknown';
  }
}

/** Sends a CancelRequest to a backend the way the session connected to it (TLS or not). */
async function sendCancel(target: BackendTarget, tls: boolean, key: CancelKey): Promise<void> {
  const cancelTarget: BackendTarget = tls
    ? { ...target, sslmode: target.sslmode === 'prefer' || target.sslmode === 'allow' ? 'require' : target.sslmode }
    : { ...target, sslmode: 'disable' };
  const { socket } = await dialBackend(cancelTarget);
  await new Promise<void>((resolve) => {
    socket.once('close', () => resolve());
    socket.once('error', () => resolve());
    socket.end(encodeCancelRequest(key.processId, key.secretKey));
    // The server answers by closing; reading is what sees that (a dialed socket may start paused).
    socket.resume();
    setTimeout(() => {
      socket.destroy();
      resolve();
    }, 5_000).unref();
  });
}
