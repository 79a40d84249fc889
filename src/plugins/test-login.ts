import { randomBytes, randomInt } from 'node:crypto';
import { createLocalJWKSet, exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import { tokenResolver } from '../auth/jwt-provider.js';
import type { AuthProvider, AuthResult, ClientChannel } from '../auth/provider.js';
import { parseBackends } from '../auth/routing.js';
import type { Endpoint } from '../pipeline/middleware.js';
import { ConnectionClosed } from '../transport/socket-io.js';
import { frontendMessage, type BackendMessage, type FrontendMessage } from '../protocol/index.js';
import type { AuthServices } from './api.js';
import { recordingLogger, type LogRecord } from './test-log.js';
import type { TestPeer } from './test-session.js';

export interface TestLoginOptions {
  /** The client's startup parameters (default `{ user: 'alice', database: 'alice' }`). */
  startup?: Readonly<Record<string, string>>;
  client?: Partial<Endpoint>;
}

/** How an authentication ended. */
export type TestLoginOutcome = { readonly result: AuthResult } | { readonly error: unknown; readonly clientGone: boolean };

export interface TestLogin {
  /** The client: what it sends the provider and what the provider sent it. */
  readonly client: TestPeer<FrontendMessage, BackendMessage>;
  /** Settles as `authenticate` does. */
  readonly result: Promise<AuthResult>;
  /** Set once `authenticate` has settled. */
  readonly outcome: TestLoginOutcome | undefined;
  /** Whether the provider said it finished the client handshake itself (`channel.handshakeComplete()`). */
  readonly handshakeCompleted: boolean;
  /** The cancel key the provider reserved (`channel.reserveCancelKey()`), if it did. */
  readonly cancelKey: { readonly processId: number; readonly secretKey: Buffer } | undefined;
  /** What the provider logged through `channel.log`. */
  readonly logs: readonly LogRecord[];
  /** Resolves once the provider waits for the client's next message, or has finished. */
  settle(): Promise<void>;
}

/** The client's messages as `channel.read()` hands them out, and who waits for the provider to read. */
class ScriptedClient {
  private readonly queue: FrontendMessage[] = [];
  private reader: { resolve(m: FrontendMessage): void; reject(err: unknown): void } | undefined;
  private closed = false;
  private waitingForRead: (() => void)[] = [];

  /** Whether the provider waits for the client's next message. */
  get reading(): boolean {
    return this.reader !== undefined;
  }

  read(): Promise<FrontendMessage> {
    const next = this.queue.shift();
    if (next) return Promise.resolve(next);
    if (this.closed) return Promise.reject(new ConnectionClosed('client'));
    const waiting = new Promise<FrontendMessage>((resolve, reject) => (this.reader = { resolve, reject }));
    this.wake();
    return waiting;
  }

  send(m: FrontendMessage): void {
    const decoded = frontendMessage(m.code, m.raw);
    const r = this.reader;
    this.reader = undefined;
    if (r) r.resolve(decoded);
    else this.queue.push(decoded);
  }

  end(): void {
    this.closed = true;
    const r = this.reader;
    this.reader = undefined;
    r?.reject(new ConnectionClosed('client'));
  }

  /** Resolves at the provider's next read (or `wake()`). */
  nextRead(): Promise<void> {
    return new Promise((resolve) => this.waitingForRead.push(resolve));
  }

  wake(): void {
    const waiting = this.waitingForRead;
    this.waitingForRead = [];
    for (const fn of waiting) fn();
  }
}

/**
 * Runs an auth provider's `authenticate` against a scripted client, through a `ClientChannel`
 * that behaves as the proxy's: `read()` hands over the client's messages in order (undecoded,
 * as off a socket) and rejects once the client has closed; `send()` reaches the client in order.
 */
export function startTestLogin(provider: AuthProvider, opts: TestLoginOptions = {}): TestLogin {
  const received: BackendMessage[] = [];
  const logs: LogRecord[] = [];
  const client = new ScriptedClient();
  let outcome: TestLoginOutcome | undefined;
  let handshakeCompleted = false;
  let cancelKey: { processId: number; secretKey: Buffer } | undefined;
  const channel: ClientChannel = {
    client: { address: '127.0.0.1', port: 50_000, tls: false, ...opts.client },
    startup: new Map(Object.entries(opts.startup ?? { user: 'alice', database: 'alice' })),
    log: recordingLogger(logs),
    send: (...messages) => void received.push(...messages),
    read: () => client.read(),
    reserveCancelKey: () => (cancelKey ??= { processId: randomInt(1, 0x7fffffff), secretKey: randomBytes(4) }),
    handshakeComplete: () => void (handshakeCompleted = true),
  };
  const result = provider.authenticate(channel);
  result
    .then(
      (r) => void (outcome = { result: r }),
      (error: unknown) => void (outcome = { error, clientGone: error instanceof ConnectionClosed }),
    )
    .finally(() => client.wake());

  let taken = 0;
  return {
    client: {
      send: (...messages) => messages.forEach((m) => client.send(m)),
      end: () => client.end(),
      received,
      take: () => received.slice(taken, (taken = received.length)),
    },
    result,
    get outcome() {
      return outcome;
    },
    get handshakeCompleted() {
      return handshakeCompleted;
    },
    get cancelKey() {
      return cancelKey;
    },
    logs,
    settle: () => (outcome || client.reading ? Promise.resolve() : client.nextRead()),
  };
}

/** Real token checking for tests of auth providers: see {@link testTokenServices}. */
export interface TestTokens {
  /** What an auth provider's factory receives: `resolveToken` verifies and routes as the `jwt` provider does. */
  readonly services: AuthServices;
  /** A token signed with the test key; `exp` is an hour away unless given. */
  sign(claims: JWTPayload): Promise<string>;
  /** A token signed with another key: refused as a forged one is. */
  forge(claims: JWTPayload): Promise<string>;
}

/**
 * `AuthServices` whose `resolveToken` is pgward's own (signature, `exp`/`nbf`, algorithms, the
 * backends mapping by `sub`), with a key made for the test and `backends` as the backends file:
 * `{ alice: 'postgres://alice:secret@db.internal:5432/app' }`.
 */
export async function testTokenServices(backends: Readonly<Record<string, unknown>>): Promise<TestTokens> {
  const [key, other] = await Promise.all([generateKeyPair('ES256'), generateKeyPair('ES256')]);
  const jwk = { ...(await exportJWK(key.publicKey)), kid: 'test', alg: 'ES256' };
  const keys = { resolve: createLocalJWKSet({ keys: [jwk] }), describe: () => ['the test key'] };
  const routes = parseBackends(backends, 'test backends');
  const resolveToken = tokenResolver({
    current: () => ({ keys, routes }),
    jwtField: 'sub',
    verify: { algorithms: ['ES256'], clockToleranceSec: 0, requireExp: true },
    requireUserMatch: true,
  });
  const signWith = (privateKey: typeof key.privateKey) => (claims: JWTPayload) =>
    new SignJWT({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims }).setProtectedHeader({ alg: 'ES256', kid: 'test' }).sign(privateKey);
  return { services: { resolveToken }, sign: signWith(key.privateKey), forge: signWith(other.privateKey) };
}
