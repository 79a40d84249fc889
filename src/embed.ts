/**
 * Embedding the whole proxy in another Node.js program (`pgward/embed`): build a configuration
 * from the same flags, environment and file `pgward start` reads, and start it.
 *
 *   const config = buildProxyConfig(['--config', 'pgward.yaml']);
 *   const proxy = await startProxy(config);
 *   …
 *   await proxy.close();
 */
export { startProxy, type RunningProxy, type StartOptions } from './cli/start.js';
export { buildProxyConfig, type ProxyConfig } from './config/proxy-config.js';
export { ConfigError } from './config/load.js';
export { pgwardVersion } from './util/version.js';
