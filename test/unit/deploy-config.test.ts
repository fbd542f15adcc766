import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { ApiMetrics } from '../../src/api/metrics.ts';
import { DEFAULT_PORTS } from '../../src/config/index.ts';
import { HEALTH_PORTS } from '../../src/health/config.ts';
import { ConsumerMetrics } from '../../src/health/consumer-metrics.ts';
import { HealthState } from '../../src/health/health-state.ts';
import { RegistryMetrics } from '../../src/registry/routes-ops.ts';
import { CaptureMetrics } from '../../src/source/metrics.ts';

/**
 * docker-compose.yml's Prometheus and Grafana cannot run here, so their
 * files are held to the code: every metric the dashboard queries is one our
 * processes register (names read from the prom-client registries the
 * processes build, not from a list), every scrape target is a compose
 * service at the port its process listens on, and the provisioning points
 * where compose mounts it. The YAML files under deploy/ are written in the
 * JSON subset of YAML (full-line comments only), so they parse here without
 * a YAML library; docker-compose.yml is read line by line for the few keys
 * checked (service blocks, `command`, `environment`), failing loudly if its
 * layout changes.
 */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const read = (p: string) => readFileSync(`${ROOT}${p}`, 'utf8');
const jsonYaml = (p: string) => JSON.parse(read(p).split('\n').filter((l) => !/^\s*#/.test(l)).join('\n'));

/** Every series name our processes expose: each registry's metrics, histograms with their _bucket/_sum/_count. */
function registeredNames(): Set<string> {
  const health = new Registry();
  new HealthState(health);
  const registries = [new CaptureMetrics().registry, new ConsumerMetrics('g').registry, new ApiMetrics().registry, new RegistryMetrics().registry, health];
  const names = new Set<string>();
  for (const r of registries) {
    for (const m of r.getMetricsAsArray()) {
      const name = (m as unknown as { name: string }).name;
      names.add(name);
      if (m instanceof Histogram) for (const s of ['_bucket', '_sum', '_count']) names.add(`${name}${s}`);
    }
  }
  return names;
}

const PROMQL_WORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'offset', 'bool', 'and', 'or', 'unless', 'inf', 'nan']);

/** Metric names a PromQL expression selects: identifiers outside label matchers, ranges, strings and grouping clauses that are not function calls. */
export function promqlMetricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    // numbers and durations (0.99, 5m, 1h30m)
    .replace(/(?<![a-zA-Z0-9_:])\d[\d.]*(?:[a-zA-Z]+\d*)*/g, ' ');
  const out: string[] = [];
  for (const m of bare.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?/g)) {
    if (m[1] || PROMQL_WORDS.has(m[0].toLowerCase())) continue;
    out.push(m[0]);
  }
  return out;
}

/** Prometheus's own series for each target, not ours. */
const PROMETHEUS_SYNTHETIC = new Set(['up', 'scrape_duration_seconds', 'scrape_samples_scraped']);

interface ComposeService { name: string; body: string }

function composeServices(): ComposeService[] {
  const text = read('docker-compose.yml');
  const start = text.indexOf('\nservices:\n');
  const end = text.indexOf('\nvolumes:\n', start);
  expect(start, 'docker-compose.yml has a top-level services: block').toBeGreaterThan(0);
  const block = text.slice(start + '\nservices:\n'.length, end < 0 ? undefined : end);
  return block.split(/^(?= {2}[a-z][\w-]*:\s*$)/m).filter((b) => /^ {2}[a-z]/.test(b))
    .map((b) => ({ name: /^ {2}([a-z][\w-]*):/.exec(b)![1]!, body: b }));
}

/** `KEY: value` lines of an environment block (the service's own, or the x-app anchor's). */
function envOf(body: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const m of body.matchAll(/^ {4,6}([A-Z][A-Z0-9_]*): *"?([^"\n]*?)"?\s*$/gm)) env[m[1]!] = m[2]!;
  return env;
}

function commandOf(body: string): string[] | undefined {
  const m = /^ {4}command: (\[.*\])\s*$/m.exec(body);
  return m ? (JSON.parse(m[1]!) as string[]) : undefined;
}

/** The port setting and default of the process a `shopstream` command runs. */
function listenOf(command: string[]): { hostVar: string; portVar: string; port: number } | undefined {
  const c = command.join(' ');
  if (c === 'capture') return { hostVar: 'CAPTURE_METRICS_HOST', portVar: 'CAPTURE_METRICS_PORT', port: HEALTH_PORTS.capture };
  if (c === 'consume warehouse') return { hostVar: 'CONSUMER_HEALTH_HOST', portVar: 'CONSUMER_HEALTH_PORT', port: HEALTH_PORTS.warehouse };
  if (c === 'consume clickstream') return { hostVar: 'CLICKSTREAM_HEALTH_HOST', portVar: 'CLICKSTREAM_HEALTH_PORT', port: HEALTH_PORTS.clickstream };
  if (c === 'api') return { hostVar: 'API_HOST', portVar: 'API_PORT', port: DEFAULT_PORTS.api };
  if (c === 'registry') return { hostVar: 'REGISTRY_HOST', portVar: 'REGISTRY_PORT', port: DEFAULT_PORTS.registry };
  return undefined;
}

describe('promqlMetricNames', () => {
  it('finds selected metrics, not functions, labels, ranges or keywords', () => {
    expect(promqlMetricNames('sum by (group) (rate(consumer_messages_applied_total{group="a b"}[1m]))')).toEqual(['consumer_messages_applied_total']);
    expect(promqlMetricNames('histogram_quantile(0.99, sum by (le, group) (rate(x_bucket[5m])))')).toEqual(['x_bucket']);
    expect(promqlMetricNames('a / on (job) b unless c offset 5m')).toEqual(['a', 'b', 'c']);
  });
});

describe('docker-compose Prometheus and Grafana', () => {
  const prom = jsonYaml('deploy/prometheus/prometheus.yml') as { scrape_configs: Array<{ job_name: string; metrics_path?: string; static_configs: Array<{ targets: string[] }> }> };
  const dashboard = JSON.parse(read('deploy/grafana/dashboards/shopstream.json')) as { uid: string; panels: Array<{ title: string; datasource: { uid: string }; targets: Array<{ expr: string; datasource: { uid: string } }> }> };
  const services = composeServices();
  const anchorEnv = envOf(read('docker-compose.yml').split('\nservices:\n')[0]!);

  it('queries only metrics our processes register, and covers lag, throughput, freshness, DLQ, slot WAL and CLV segments', () => {
    const registered = registeredNames();
    expect(registered.size).toBeGreaterThan(30);
    const queried = new Set<string>();
    for (const p of dashboard.panels) {
      expect(p.targets.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets) {
        const names = promqlMetricNames(t.expr);
        expect(names.length, `${p.title}: ${t.expr}`).toBeGreaterThan(0);
        for (const n of names) {
          expect(registered.has(n) || PROMETHEUS_SYNTHETIC.has(n), `${p.title}: ${n} is not a metric any process registers`).toBe(true);
          queried.add(n);
        }
      }
    }
    for (const n of ['consumer_lag_messages', 'consumer_messages_applied_total', 'capture_events_total', 'consumer_freshness_seconds',
      'consumer_dead_letters', 'capture_dlq_total', 'capture_slot_wal_retained_bytes', 'api_clv_segment_customers']) {
      expect(queried.has(n), `the dashboard shows ${n}`).toBe(true);
    }
  });

  it('scrapes every pipeline process at its compose service and the port it listens on, reachable from another container', () => {
    const targets = prom.scrape_configs.flatMap((j) => {
      expect(j.metrics_path ?? '/metrics').toBe('/metrics');
      return j.static_configs.flatMap((s) => s.targets);
    });
    const pipeline = services.map((s) => ({ s, cmd: commandOf(s.body) })).filter((x) => x.cmd && listenOf(x.cmd));
    expect(pipeline.map((x) => x.s.name).sort()).toEqual(['api', 'capture', 'clickstream', 'consumers', 'registry']);
    expect(targets.length).toBe(pipeline.length);
    for (const target of targets) {
      const [host, port] = target.split(':');
      const svc = pipeline.find((x) => x.s.name === host);
      expect(svc, `${target}: no compose service "${host}" running a pipeline process`).toBeDefined();
      const listen = listenOf(svc!.cmd!)!;
      const env = { ...anchorEnv, ...envOf(svc!.s.body) };
      expect(Number(port), `${target}: ${listen.portVar}`).toBe(env[listen.portVar] !== undefined ? Number(env[listen.portVar]) : listen.port);
      expect(env[listen.hostVar], `${host}: ${listen.hostVar} must listen beyond loopback inside the container`).toBe('0.0.0.0');
    }
  });

  it('provisions the datasource every panel uses and the dashboard folder compose mounts', () => {
    const ds = jsonYaml('deploy/grafana/provisioning/datasources/prometheus.yml') as { datasources: Array<{ uid: string; type: string; url: string }> };
    expect(ds.datasources).toHaveLength(1);
    const [d] = ds.datasources;
    expect(d).toMatchObject({ type: 'prometheus' });
    expect(services.map((s) => s.name)).toContain(new URL(d!.url).hostname);
    for (const p of dashboard.panels) {
      expect(p.datasource.uid, p.title).toBe(d!.uid);
      for (const t of p.targets) expect(t.datasource.uid, p.title).toBe(d!.uid);
    }
    const providers = jsonYaml('deploy/grafana/provisioning/dashboards/dashboards.yml') as { providers: Array<{ options: { path: string } }> };
    const grafana = services.find((s) => s.name === 'grafana')!;
    expect(grafana.body).toContain(`./deploy/grafana/dashboards:${providers.providers[0]!.options.path}:ro`);
    expect(grafana.body).toContain('./deploy/grafana/provisioning:/etc/grafana/provisioning:ro');
    expect(services.find((s) => s.name === 'prometheus')!.body).toContain('./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro');
  });
});
