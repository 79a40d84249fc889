import { buildProxyConfig } from '../../src/config/proxy-config.js';
import { startProxy, type RunningProxy } from '../../src/cli/start.js';
import type { Middleware } from '../../src/pipeline/index.js';
import { createLogger } from '../../src/telemetry/log.js';

export interface TestProxy extends AsyncDisposable {
  proxy: RunningProxy;
  port: number;
  /** Every log line the proxy wrote (JSON). */
  logs: string[];
  /** A connection URL through the proxy. */
  url(user: string, password?: string, db?: string, query?: string): string;
  close(): Promise<void>;
}

/** Starts pgward in-process on a free loopback port with JSON logs captured for assertions. */
export async function startTestProxy(args: string[], opts: { middleware?: Middleware[] } = {}): Promise<TestProxy> {
  const config = buildProxyConfig(['--bindAddr', '127.0.0.1:0', ...args], {});
  const logs: string[] = [];
  const log = createLogger({ level: 'debug', format: 'json' }, {}, { write: (l) => void logs.push(l.trimEnd()) });
  const i = args.indexOf('--config');
  const proxy = await startProxy(config, { log, middleware: opts.middleware, configPath: i >= 0 ? args[i + 1] : undefined });
  const port = proxy.address.port;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await proxy.close();
  };
  return {
    proxy,
    port,
    logs,
    url: (user, password, db = 'postgres', query = 'sslmode=disable') =>
      `postgres://${encodeURIComponent(user)}${password !== undefined ? ':' + encodeURIComponent(password) : ''}@127.0.0.1:${port}/${db}?${query}`,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Parsed JSON log events whose message is `msg`. */
export function logEvents(logs: readonly string[], msg: string): Record<string, unknown>[] {
  return logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.msg === msg);
}
