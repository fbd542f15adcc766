import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { FastCounter, FastHistogram, type CounterSeries, type HistogramSeries } from './fast-metrics.ts';

/** The request counter and latency series of one method/route/status. */
interface RequestSeries {
  count: CounterSeries;
  latency: HistogramSeries;
}

/** Records one answered request of a route: its status and duration in seconds. */
export type RouteRecorder = (status: number, seconds: number) => void;

/**
 * The API's Prometheus metrics, on a registry of its own rather than
 * prom-client's global one: tests run several apps in one process and each
 * must count only its own requests. The per-request ones are fast-metrics
 * series (src/api/fast-metrics.ts): the lookup path updates them without
 * allocating.
 */
export class ApiMetrics {
  readonly registry = new Registry();

  readonly requests = new FastCounter('api_http_requests_total',
    'HTTP requests answered, by route pattern and status code.', ['method', 'route', 'status'], this.registry);

  readonly latency = new FastHistogram('api_http_request_duration_seconds',
    'Time from request received to response sent, by route pattern.', ['method', 'route', 'status'],
    // Lookups are expected well under 2 ms, so the low end is finely cut.
    [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], this.registry);

  readonly redisLookups = new FastCounter('api_clv_redis_lookups_total',
    'CLV lookups in Redis: hit, miss (no key), or error (Redis down, slow or unreadable entry).', ['result'], this.registry);

  readonly postgresFallbacks = new FastCounter('api_clv_postgres_fallbacks_total',
    'CLV lookups answered from Postgres because Redis missed the key or failed.', ['reason'], this.registry);

  readonly clvSegments = new Gauge({
    name: 'api_clv_segment_customers',
    help: 'Customers per CLV value and frequency segment (customer_lifetime_value), as the status page last sampled them.',
    labelNames: ['value_segment', 'frequency_segment'] as const,
    registers: [this.registry],
  });

  // Created here, so the series exist at 0 and dashboards and rate() see them before the first event.
  readonly redisHit = this.redisLookups.series({ result: 'hit' });
  readonly redisMiss = this.redisLookups.series({ result: 'miss' });
  readonly redisError = this.redisLookups.series({ result: 'error' });
  readonly fallbackMiss = this.postgresFallbacks.series({ reason: 'miss' });
  readonly fallbackRedisError = this.postgresFallbacks.series({ reason: 'redis_error' });

  private readonly requestSeries = new Map<string, RequestSeries>();

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  private series(method: string, route: string, status: number): RequestSeries {
    const key = `${status} ${method} ${route}`;
    let s = this.requestSeries.get(key);
    if (s === undefined) {
      const labels = { method, route, status: String(status) };
      s = { count: this.requests.series(labels), latency: this.latency.series(labels) };
      this.requestSeries.set(key, s);
    }
    return s;
  }

  /** Counts an answered request and its duration. */
  observeRequest(method: string, route: string, status: number, seconds: number): void {
    const s = this.series(method, route, status);
    s.count.value++;
    s.latency.observe(seconds);
  }

  /** observeRequest for one method and route, its series looked up by status number: no key string per request. */
  routeRecorder(method: string, route: string): RouteRecorder {
    const byStatus = new Map<number, RequestSeries>();
    return (status, seconds) => {
      let s = byStatus.get(status);
      if (s === undefined) {
        s = this.series(method, route, status);
        byStatus.set(status, s);
      }
      s.count.value++;
      s.latency.observe(seconds);
    };
  }
}
