import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The API's Prometheus metrics, on a registry of its own rather than
 * prom-client's global one: tests run several apps in one process and each
 * must count only its own requests.
 */
export class ApiMetrics {
  readonly registry = new Registry();

  readonly requests = new Counter({
    name: 'api_http_requests_total',
    help: 'HTTP requests answered, by route pattern and status code.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });

  readonly latency = new Histogram({
    name: 'api_http_request_duration_seconds',
    help: 'Time from request received to response sent, by route pattern.',
    labelNames: ['method', 'route', 'status'] as const,
    // Lookups are expected well under 2 ms, so the low end is finely cut.
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  readonly redisLookups = new Counter({
    name: 'api_clv_redis_lookups_total',
    help: 'CLV lookups in Redis: hit, miss (no key), or error (Redis down, slow or unreadable entry).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  readonly postgresFallbacks = new Counter({
    name: 'api_clv_postgres_fallbacks_total',
    help: 'CLV lookups answered from Postgres because Redis missed the key or failed.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly clvSegments = new Gauge({
    name: 'api_clv_segment_customers',
    help: 'Customers per CLV value and frequency segment (customer_lifetime_value), as the status page last sampled them.',
    labelNames: ['value_segment', 'frequency_segment'] as const,
    registers: [this.registry],
  });

  /** One labels object per method/route/status seen, not one per request. */
  private readonly requestLabels = new Map<string, { method: string; route: string; status: string }>();

  /** Counts an answered request and its duration. */
  observeRequest(method: string, route: string, status: number, seconds: number): void {
    const key = `${status} ${method} ${route}`;
    let labels = this.requestLabels.get(key);
    if (labels === undefined) {
      labels = { method, route, status: String(status) };
      this.requestLabels.set(key, labels);
    }
    this.requests.inc(labels);
    this.latency.observe(labels, seconds);
  }

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    // Make the series exist at 0 so dashboards and rate() see them before the first event.
    for (const result of ['hit', 'miss', 'error']) this.redisLookups.inc({ result }, 0);
    for (const reason of ['miss', 'redis_error']) this.postgresFallbacks.inc({ reason }, 0);
  }
}
