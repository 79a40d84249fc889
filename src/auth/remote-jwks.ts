/**
 * Remote JWKS: fetched over HTTPS (http only for loopback hosts), kept when a refresh fails, and
 * refetched for unknown keys no more often than a cooldown allows.
 *
 * Remote JWKS are fetched here rather than with jose's createRemoteJWKSet because the proxy needs
 * things it does not offer: a bound on the body size, old keys kept when a background refresh
 * fails, and a cooldown that also applies after a failed fetch (so a burst of tokens with made-up
 * `kid`s cannot turn into a burst of requests to an identity provider that is down).
 */
import { JwksHolder, checkJwks, keysText } from './jwks.js';

export class RemoteJwks extends JwksHolder {
  private inflight: Promise<void> | undefined;
  private lastAttempt = Number.NEGATIVE_INFINITY;
  private fetchedAt: number | undefined;
  private lastError: string | undefined;
  /** Counts the times a fetch brought keys different from those held before it. */
  generation = 0;

  constructor(
    private readonly url: URL,
    label: string,
    private readonly fetchOpts: FetchOptions,
    private readonly cooldownMs: number,
    private readonly allowed: readonly string[],
  ) {
    super(label);
  }

  /** The first fetch, at load: any failure is the source's error. */
  async initialLoad(): Promise<void> {
    try {
      await this.fetch();
    } catch (err) {
      throw new Error(`${this.label}: ${(err as Error).message}`);
    }
  }

  /** Fetches now (concurrent callers share one request); on failure the old keys stay. */
  fetch(): Promise<void> {
    this.inflight ??= (async () => {
      this.lastAttempt = Date.now();
      try {
        const doc = await fetchJson(this.url, this.fetchOpts);
        const next = await checkJwks(doc, 'the document', this.allowed, false);
        if (next.fingerprint !== this.current?.fingerprint) this.generation++;
        this.current = next;
        this.fetchedAt = Date.now();
        this.lastError = undefined;
      } catch (err) {
        this.lastError = (err as Error).message;
        throw err;
      }
    })().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  /**
   * Called when no key matched: refetches unless one was attempted less than the cooldown ago.
   * 'unavailable' when the source is failing (now or at its last attempt).
   */
  async refetchForUnknownKey(): Promise<'refetched' | 'cooling' | 'unavailable'> {
    if (!this.inflight && Date.now() - this.lastAttempt < this.cooldownMs) {
      return this.lastError === undefined ? 'cooling' : 'unavailable';
    }
    try {
      await this.fetch();
      return 'refetched';
    } catch {
      return 'unavailable';
    }
  }

  override describe(refreshMs = 0): string {
    const parts = [this.current ? keysText(this.current) : 'no keys'];
    if (this.fetchedAt !== undefined) parts.push(`fetched ${new Date(this.fetchedAt).toISOString()}`);
    parts.push(refreshMs > 0 ? `refreshed every ${msText(refreshMs)}` : 'no background refresh');
    parts.push(`unknown kid refetches at most every ${msText(this.cooldownMs)}`);
    if (this.lastError !== undefined) parts.push(`last fetch failed: ${this.lastError}`);
    return `${this.label}: ${parts.join(', ')}`;
  }
}

// ------------------------------------------------------------------------------------------------
// HTTP

export interface FetchOptions {
  timeoutMs: number;
  maxBytes: number;
}

/**
 * GETs a JSON document: HTTP 200 only (redirects are not followed, so an https URL cannot be
 * bounced to plain http), the whole exchange within the deadline, the body within the size cap.
 * Errors describe the problem without the body.
 */
export async function fetchJson(url: URL, { timeoutMs, maxBytes }: FetchOptions): Promise<unknown> {
  const signal = AbortSignal.timeout(timeoutMs);
  const timedOut = () => new Error(`timed out after ${timeoutMs} ms`);
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'GET',
      redirect: 'manual',
      signal,
      headers: { accept: 'application/json, application/jwk-set+json' },
    });
  } catch (err) {
    if (signal.aborted) throw timedOut();
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const text = cause?.code ?? cause?.message ?? (err as Error).message;
    throw new Error(`cannot fetch: ${text.split(url.href).join(showUrl(url))}`);
  }
  const discard = () => res.body?.cancel().catch(() => {});
  if (res.status !== 200) {
    discard();
    const redirect = res.status >= 300 && res.status < 400 ? ' (redirects are not followed)' : '';
    throw new Error(`HTTP status ${res.status}${redirect}, expected 200`);
  }
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (Number.isFinite(declared) && declared > maxBytes) {
    discard();
    throw new Error(`response of ${declared} bytes exceeds the ${maxBytes}-byte limit`);
  }
  if (!res.body) throw new Error('empty response');
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        reader.cancel().catch(() => {});
        throw new Error(`response exceeds the ${maxBytes}-byte limit`);
      }
      chunks.push(value);
    }
  } catch (err) {
    if (signal.aborted) throw timedOut();
    throw err;
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw new Error('response is not valid UTF-8');
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new Error('response is not valid JSON');
  }
}

/** https URLs, or http for loopback hosts (tests, sidecars). */
export function checkUrl(text: string, what: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`${what} URL is not a valid URL`);
  }
  if (url.username !== '' || url.password !== '') throw new Error(`${what} URL ${showUrl(url)}: credentials in the URL are not supported`);
  if (url.protocol === 'https:') return url;
  if (url.protocol === 'http:') {
    if (isLoopbackHost(url.hostname)) return url;
    throw new Error(`${what} URL ${showUrl(url)}: http:// is allowed only for loopback hosts; use https://`);
  }
  throw new Error(`${what} URL ${showUrl(url)}: unsupported scheme ${url.protocol} (use https://)`);
}

function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127(?:\.\d{1,3}){3}$/.test(h);
}

/** A URL for messages: no user info, no query string values. */
export function showUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}${url.search ? '?…' : ''}`;
}

function msText(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
