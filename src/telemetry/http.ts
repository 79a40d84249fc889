/**
 * The metrics and health HTTP endpoints on `--metricsAddr`:
 * - `/metrics` and `/vars` (pg-auth-proxy's path): the Prometheus text exposition;
 * - `/health`: 200 while the process runs;
 * - `/ready`: 200 when `ready()` says so (listener up, not draining), else 503.
 * GET and HEAD only (405 otherwise); any other path is 404.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Metrics } from './metrics.js';

export interface MetricsServerOptions {
  host: string;
  port: number;
  metrics: Metrics;
  /** True once the proxy accepts connections and until it starts draining. */
  ready: () => boolean;
}

export interface MetricsServer {
  readonly address: AddressInfo;
  /** Stops listening and closes open connections. */
  close(): Promise<void>;
}

const TEXT = 'text/plain; charset=utf-8';

export async function startMetricsServer(opts: MetricsServerOptions): Promise<MetricsServer> {
  const { registry } = opts.metrics;

  const send = (req: IncomingMessage, res: ServerResponse, status: number, body: string, type = TEXT) => {
    res.writeHead(status, {
      'content-type': type,
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  };

  const server = createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      send(req, res, 405, 'method not allowed\n');
      return;
    }
    const path = (req.url ?? '/').split('?', 1)[0];
    switch (path) {
      case '/metrics':
      case '/vars':
        registry.metrics().then(
          (body) => send(req, res, 200, body, registry.contentType),
          () => send(req, res, 500, 'cannot collect metrics\n'),
        );
        return;
      case '/health':
        send(req, res, 200, 'ok\n');
        return;
      case '/ready':
        if (opts.ready()) send(req, res, 200, 'ready\n');
        else send(req, res, 503, 'not ready\n');
        return;
      default:
        send(req, res, 404, 'not found\n');
    }
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(opts.port, opts.host, () => {
      server.off('error', onError);
      resolve();
    });
  });

  let closing: Promise<void> | undefined;
  return {
    address: server.address() as AddressInfo,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
