import type { FastifyInstance } from 'fastify';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RegistryStore } from './store.ts';

/** The registry's Prometheus metrics, on a registry of its own (tests run several registries in one process). */
export class RegistryMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'registry_http_requests_total', help: 'HTTP requests answered, by method, route pattern and status code.',
    labelNames: ['method', 'route', 'status'] as const, registers: [this.registry],
  });
  readonly latency = new Histogram({
    name: 'registry_http_request_duration_seconds', help: 'Time from request received to response sent, by method and route pattern.',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}

/**
 * Liveness, readiness and metrics beside the Confluent REST routes, like the
 * other processes': /healthz answers while the process runs, /readyz is 200
 * when the store (Postgres) answers and 503 with the reason otherwise.
 */
export function registerOpsRoutes(app: FastifyInstance, store: RegistryStore, metrics: RegistryMetrics): void {
  app.addHook('onResponse', async (req, reply) => {
    const labels = { method: req.method, route: req.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) };
    metrics.requests.inc(labels);
    metrics.latency.observe(labels, reply.elapsedTime / 1000);
  });
  app.get('/healthz', async () => ({ status: 'ok', process: 'schema-registry', pid: process.pid }));
  app.get('/readyz', async (_req, reply) => {
    try {
      await store.ping();
      return reply.code(200).send({ status: 'ready', process: 'schema-registry', pid: process.pid, conditions: { store: { healthy: true } } });
    } catch (err) {
      const detail = `store unreachable: ${(err as Error).message}`;
      return reply.code(503).send({ status: 'unready', process: 'schema-registry', pid: process.pid, reason: `store: ${detail}`, conditions: { store: { healthy: false, detail } } });
    }
  });
  app.get('/metrics', async (_req, reply) => reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics()));
}
