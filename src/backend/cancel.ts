import { randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { encodeCancelRequest } from '../protocol/index.js';
import { dialBackend } from './dial.js';
import { ownedProcessId, ownerOf, RANDOM_PROCESS_ID_LIMIT } from './peers.js';
import type { BackendTarget } from './url.js';

export interface CancelKey {
  processId: number;
  secretKey: Buffer;
}

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
 * backend key, so a cancel can only reach a backend through a session pgward knows.
 */
export class CancelRegistry {
  private readonly byPid = new Map<number, Entry>();

  constructor(private readonly opts: CancelRegistryOptions = {}) {}

  /** Issues a fresh random key for a session (4-byte secret for protocol 3.0, 32 for 3.2). */
  register(backendKey: CancelKey, target: BackendTarget, tls: boolean, secretLength = 4): CancelKey {
    const proxyKey = this.reserve(secretLength);
    this.bind(proxyKey, backendKey, target, tls);
    return proxyKey;
  }

  /** Issues a key before the session has a backend; `bind` it once connected. */
  reserve(secretLength = 4): CancelKey {
    let processId: number;
    const id = this.opts.instanceId;
    do processId = id ? ownedProcessId(id, randomInt(1, RANDOM_PROCESS_ID_LIMIT)) : randomInt(1, 0x7fffffff);
    while (this.byPid.has(processId));
    const proxyKey = { processId, secretKey: randomBytes(secretLength) };
    this.byPid.set(processId, { proxyKey, tls: false });
    return proxyKey;
  }

  bind(proxyKey: CancelKey, backendKey: CancelKey, target: BackendTarget, tls: boolean): void {
    const e = this.byPid.get(proxyKey.processId);
    if (e) Object.assign(e, { backendKey, target, tls });
  }

  unregister(key: CancelKey): void {
    const e = this.byPid.get(key.processId);
    if (e && e.proxyKey.secretKey.equals(key.secretKey)) this.byPid.delete(key.processId);
  }

  get size(): number {
    return this.byPid.size;
  }

  /** The backend entry for a client's key, compared in constant time; undefined if unknown. */
  lookup(key: CancelKey): { backendKey: CancelKey; target: BackendTarget; tls: boolean } | undefined {
    const e = this.byPid.get(key.processId);
    if (!e || !e.backendKey || !e.target) return undefined;
    const a = e.proxyKey.secretKey;
    const b = key.secretKey;
    if (a.length !== b.length || !timingSafeEqual(a, b)) return undefined;
    return { backendKey: e.backendKey, target: e.target, tls: e.tls };
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
export async function sendCancel(target: BackendTarget, tls: boolean, key: CancelKey): Promise<void> {
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
