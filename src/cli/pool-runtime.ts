import type { Registry } from 'prom-client';
import type { BackendRoutes } from '../auth/routing.js';
import { BackendPool } from '../backend/pool.js';
import { loginTarget } from '../backend/target-copy.js';
import { describePoolSettings, type PoolSettings } from '../backend/pool-settings.js';
import { backendStartupParams } from '../server/startup-params.js';
import type { Logger } from '../telemetry/log.js';
import { createPoolMetrics } from '../telemetry/pool-metrics.js';

/** The process's backend pool with what start, reload and shutdown do to it. */
export interface PoolRuntime {
  readonly pool: BackendPool;
  /** Opens `warm` idle connections for each route that is not a template. */
  warm(routes: BackendRoutes | undefined): Promise<void>;
  /** A reload: new settings; targets whose route changed or vanished are retired, then warmed again. */
  reload(settings: PoolSettings, routes: BackendRoutes | undefined): Promise<void>;
  /** SIGTERM: idle connections close now, the others as their sessions end. */
  close(): void;
}

export function startPool(settings: PoolSettings, registry: Registry, log: Logger): PoolRuntime {
  const metrics = createPoolMetrics(registry);
  const poolLog = log.child({ component: 'pool' });
  const pool = new BackendPool({
    settings,
    events: {
      acquired: (target, result, waited) => metrics.acquired(target, result, waited),
      closed: (target, why) => poolLog.debug('backend connection closed', { target, why }),
    },
  });
  metrics.watch(pool);
  const warm = async (routes: BackendRoutes | undefined) => {
    for (const route of routes?.fixed() ?? []) {
      const match = route.build();
      const target = match.target;
      const count = pool.settingsFor(target).warm;
      // Without a user of its own the route logs in as each client's user: nothing to open ahead.
      if (count === 0 || pool.settingsFor(target).mode !== 'session' || !target.user) continue;
      const user = target.user;
      const database = target.database ?? user;
      try {
        const password = match.passwordCommand ? await match.passwordCommand.get() : target.password;
        const full = loginTarget(target, user, database, password);
        const params = backendStartupParams(new Map(), full, user, database, { reservedParams: new Set(), allowReplication: false });
        const opened = await pool.warm(full, { params, apply: new Map() }, count);
        poolLog.info('pool warmed', { route: route.key, target: `${user}@${target.host}:${target.port}/${database}`, opened });
      } catch (err) {
        poolLog.warn('could not warm the pool', { route: route.key, reason: (err as Error).message });
      }
    }
  };
  poolLog.info('backend pool', { settings: describePoolSettings(settings) });
  return {
    pool,
    warm,
    async reload(next, routes) {
      pool.reconfigure(next, (id) => id === undefined || routes === undefined || routes.routeIds.has(id));
      await warm(routes);
    },
    close: () => pool.close(),
  };
}
