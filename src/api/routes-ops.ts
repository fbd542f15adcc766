import type { FastifyInstance } from 'fastify';
import type { ClvPostgres } from './clv-pg.ts';
import type { ClvCache } from './clv-lookup.ts';
import type { ApiMetrics } from './metrics.ts';

export interface OpsRouteDeps {
  pg: ClvPostgres;
  cache: ClvCache;
  metrics: ApiMetrics;
}

/** Liveness, readiness and Prometheus metrics. */
export function registerOpsRoutes(app: FastifyInstance, deps: OpsRouteDeps): void {
  // Liveness only: answering at all is the signal. Checking dependencies here
  // would get a healthy process restarted because Postgres is down.
  app.get('/healthz', async () => ({ status: 'ok' }));

  // Ready when Postgres answers: it can serve every route alone. Redis is
  // reported for operators but never makes the API unready.
  app.get('/readyz', async (_req, reply) => {
    const [pgResult, redisResult] = await Promise.allSettled([deps.pg.ping(), deps.cache.ping()]);
    const postgres = pgResult.status === 'fulfilled' ? 'up' : 'down';
    const redis = redisResult.status === 'fulfilled' ? 'up' : 'down';
    const ready = postgres === 'up';
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'unready', postgres, redis, pid: process.pid });
  });

  app.get('/metrics', async (_req, reply) => {
    const body = await deps.metrics.registry.metrics();
    return reply.header('content-type', deps.metrics.registry.contentType).send(body);
  });
}
