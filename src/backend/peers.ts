import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import net from 'node:net';
import { guardSocket } from '../transport/socket-guard.js';
import { ownerOf, type CancelKey } from './cancel-key.js';
import { formatHostPort } from '../util/host-port.js';

/**
 * Cancel forwarding between pgward instances behind one load balancer.
 *
 * A client's CancelRequest arrives on a new connection, which the balancer may send to any
 * instance. Each instance therefore puts its own id in the top bits of the process ids it issues
 * ({@link ownerOf}); an instance that receives a key it does not own sends it to the owner's peer
 * address. Frames are sealed with AES-256-GCM under a key derived from a secret all instances
 * share, so only a peer can make an instance send a cancel, the cancel key never crosses the
 * network in the clear, and a timestamp plus a nonce cache refuse replays. A frame is delivered
 * to the owner's own sessions only, never forwarded again, so there are no loops.
 */

export interface PeerAddress {
  host: string;
  port: number;
}

export interface PeerSettings {
  /** This instance's id, 1..127, unique among the peers. */
  id: number;
  /** Shared by every instance; at least 32 bytes. */
  secret: Buffer;
  /** Every instance's peer address by id (this one's may be listed too). */
  instances: ReadonlyMap<number, PeerAddress>;
}

/** What happened to a frame a peer sent this instance. */
export type PeerEvent = 'from_peer' | 'unknown' | 'rejected';

export interface PeerChannelOptions extends PeerSettings {
  /** Sends a cancel to this instance's own backend session; false when the key is unknown here. */
  deliverLocally(key: CancelKey): Promise<boolean>;
  /** Each frame a peer sent; `detail` names the peer or the reason, never a key. */
  onEvent?(event: PeerEvent, detail: Record<string, unknown>): void;
  /** How far a frame's timestamp may be from this clock; default 30 s. */
  maxSkewMs?: number;
  /** Dial and reply timeout; default 3 s. */
  timeoutMs?: number;
}

const MAGIC = Buffer.from('PGWP');
const VERSION = 1;
const HEADER = 4 + 1 + 1 + 12 + 2;
const TAG = 16;
const MAX_SECRET_KEY = 256;
const MAX_FRAME = HEADER + 8 + 4 + MAX_SECRET_KEY + TAG;
const NONCE_CACHE_LIMIT = 100_000;
const REPLY_DELIVERED = 1;
const REPLY_UNKNOWN = 0;

function deriveKey(secret: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, 'pgward peers', 'cancel forwarding v1', 32));
}

/** Seals one cancel for a peer: header (authenticated) + AES-256-GCM ciphertext + tag. */
export function sealCancel(key: Buffer, senderId: number, cancel: CancelKey, now = Date.now()): Buffer {
  const nonce = randomBytes(12);
  const plain = Buffer.alloc(12 + cancel.secretKey.length);
  plain.writeBigUInt64BE(BigInt(now), 0);
  plain.writeUInt32BE(cancel.processId >>> 0, 8);
  cancel.secretKey.copy(plain, 12);
  const header = Buffer.alloc(HEADER);
  MAGIC.copy(header, 0);
  header[4] = VERSION;
  header[5] = senderId;
  nonce.copy(header, 6);
  header.writeUInt16BE(plain.length, 18);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(header);
  return Buffer.concat([header, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
}

/** Opens a sealed frame; undefined when it is not a complete, authentic frame. */
export function openCancel(
  key: Buffer,
  frame: Buffer,
): { senderId: number; nonce: string; sentAt: number; cancel: CancelKey } | undefined {
  if (frame.length < HEADER || !frame.subarray(0, 4).equals(MAGIC) || frame[4] !== VERSION) return undefined;
  const length = frame.readUInt16BE(18);
  if (length < 13 || length > 12 + MAX_SECRET_KEY || frame.length !== HEADER + length + TAG) return undefined;
  const nonce = frame.subarray(6, 18);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, nonce);
    decipher.setAAD(frame.subarray(0, HEADER));
    decipher.setAuthTag(frame.subarray(HEADER + length));
    const plain = Buffer.concat([decipher.update(frame.subarray(HEADER, HEADER + length)), decipher.final()]);
    return {
      senderId: frame[5]!,
      nonce: nonce.toString('hex'),
      sentAt: Number(plain.readBigUInt64BE(0)),
      cancel: { processId: plain.readUInt32BE(8), secretKey: Buffer.from(plain.subarray(12)) },
    };
  } catch {
    return undefined;
  }
}

/** Sends cancels this instance does not own to their owner, and accepts the ones peers send. */
export class PeerCancelChannel {
  private settings: PeerSettings;
  private key: Buffer;
  private server?: net.Server;
  /** Nonces seen within the skew window, so a captured frame cannot be replayed. */
  private readonly seen = new Map<string, number>();
  private readonly maxSkewMs: number;
  private readonly timeoutMs: number;

  constructor(private readonly opts: PeerChannelOptions) {
    this.settings = { id: opts.id, secret: opts.secret, instances: opts.instances };
    this.key = deriveKey(opts.secret);
    this.maxSkewMs = opts.maxSkewMs ?? 30_000;
    this.timeoutMs = opts.timeoutMs ?? 3_000;
  }

  get id(): number {
    return this.settings.id;
  }

  /** New peer addresses or secret (a reload); the id stays, as issued keys carry it. */
  update(next: Omit<PeerSettings, 'id'>): void {
    this.settings = { ...this.settings, secret: next.secret, instances: next.instances };
    this.key = deriveKey(next.secret);
  }

  /** Accepts peers' frames on `host:port`. */
  async listen(host: string, port: number): Promise<net.AddressInfo> {
    const server = net.createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return server.address() as net.AddressInfo;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  /**
   * Sends `cancel` to the instance that owns it. Resolves false when no peer owns it (an unknown
   * or forged key) or the owner does not know it; rejects when the owner cannot be reached.
   */
  async forward(cancel: CancelKey): Promise<boolean> {
    const owner = ownerOf(cancel.processId);
    const address = this.settings.instances.get(owner);
    if (owner === this.settings.id || !address) return false;
    const reply = await this.exchange(address, sealCancel(this.key, this.settings.id, cancel));
    return reply === REPLY_DELIVERED;
  }

  private exchange(address: PeerAddress, frame: Buffer): Promise<number> {
    return new Promise((resolve, reject) => {
      const socket = guardSocket(net.connect(address.port, address.host));
      const timer = setTimeout(() => socket.destroy(new Error(`peer ${formatHostPort(address.host, address.port)} did not answer in time`)), this.timeoutMs);
      socket.once('connect', () => socket.write(frame));
      socket.once('data', (d: Buffer) => {
        clearTimeout(timer);
        socket.destroy();
        resolve(d[0]!);
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      socket.once('close', () => {
        clearTimeout(timer);
        reject(new Error(`peer ${formatHostPort(address.host, address.port)} closed without answering`));
      });
    });
  }

  private accept(socket: net.Socket): void {
    const from = `${socket.remoteAddress}:${socket.remotePort}`;
    const chunks: Buffer[] = [];
    let received = 0;
    let done = false;
    const reject = (reason: string) => {
      if (done) return;
      done = true;
      this.opts.onEvent?.('rejected', { from, reason });
      socket.destroy();
    };
    guardSocket(socket);
    socket.setTimeout(this.timeoutMs, () => reject('no complete frame in time'));
    socket.on('end', () => reject('connection ended before a complete frame'));
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      received += d.length;
      if (received > MAX_FRAME) return reject('frame too long');
      const buf = Buffer.concat(chunks);
      if (buf.length < HEADER) return;
      if (!buf.subarray(0, 4).equals(MAGIC) || buf[4] !== VERSION) return reject('not a pgward peer frame');
      const expected = HEADER + buf.readUInt16BE(18) + TAG;
      if (expected > MAX_FRAME) return reject('frame too long');
      if (buf.length < expected) return;
      done = true;
      socket.removeAllListeners('data');
      socket.removeAllListeners('end');
      socket.setTimeout(0);
      void this.receive(buf.subarray(0, expected), socket, (reason) => {
        this.opts.onEvent?.('rejected', { from, reason });
        socket.destroy();
      });
    });
  }

  private async receive(frame: Buffer, socket: net.Socket, reject: (reason: string) => void): Promise<void> {
    const opened = openCancel(this.key, frame);
    if (!opened) return reject('not sealed with the shared secret');
    const now = Date.now();
    if (Math.abs(now - opened.sentAt) > this.maxSkewMs) return reject('timestamp outside the allowed clock skew');
    this.pruneNonces(now);
    if (this.seen.has(opened.nonce)) return reject('replayed frame');
    if (this.seen.size >= NONCE_CACHE_LIMIT) return reject('too many frames in the replay window');
    this.seen.set(opened.nonce, opened.sentAt + this.maxSkewMs);
    if (ownerOf(opened.cancel.processId) !== this.settings.id) return reject('key not owned by this instance');
    const delivered = await this.opts.deliverLocally(opened.cancel).catch(() => false);
    this.opts.onEvent?.(delivered ? 'from_peer' : 'unknown', { peer: opened.senderId });
    socket.end(Buffer.of(delivered ? REPLY_DELIVERED : REPLY_UNKNOWN));
  }

  private pruneNonces(now: number): void {
    for (const [nonce, expires] of this.seen) {
      if (expires >= now) break; // insertion order ≈ expiry order
      this.seen.delete(nonce);
    }
  }
}
