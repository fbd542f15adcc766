import type { Metric, Registry } from 'prom-client';

/**
 * Counters and histograms whose series the hot path holds on to. prom-client's
 * `inc(labels)` / `observe(labels, v)` build a label object, validate it and
 * hash it into a string on every call (the histogram also makes a closure);
 * at thousands of lookups a second that is garbage per request for a figure
 * read once a scrape. Here a caller resolves its series once and a request
 * costs an addition, or a bucket search and three additions. The registry
 * renders them like prom-client's own metrics (same names, labels, order of
 * lines), so dashboards and tests see no difference.
 */

type Labels = Record<string, string>;

interface ExportedValue {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

/** What prom-client's Registry reads from a metric: it calls get() at scrape time and formats the values. */
abstract class ExposedMetric {
  readonly aggregator = 'sum';
  abstract readonly type: 'counter' | 'histogram';

  constructor(
    readonly name: string,
    readonly help: string,
    registry: Registry,
  ) {
    // The Registry's type lists prom-client's four classes, but it only ever
    // reads name, help, type, aggregator and get() (prom-client/lib/registry.js).
    registry.registerMetric(this as unknown as Metric);
  }

  protected abstract values(): ExportedValue[];

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: ExportedValue[] }> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.values() };
  }
}

const keyOf = (names: readonly string[], labels: Labels) => names.map((n) => labels[n]).join('\u0000');

/** A counter series: add to `value`. */
export class CounterSeries {
  value = 0;
  constructor(readonly labels: Labels) {}
}

export class FastCounter extends ExposedMetric {
  readonly type = 'counter';
  private readonly all = new Map<string, CounterSeries>();

  constructor(name: string, help: string, private readonly labelNames: readonly string[], registry: Registry) {
    super(name, help, registry);
  }

  /** The series of these labels, created at 0 (so it is exported before its first event). */
  series(labels: Labels): CounterSeries {
    const key = keyOf(this.labelNames, labels);
    let s = this.all.get(key);
    if (s === undefined) {
      s = new CounterSeries({ ...labels });
      this.all.set(key, s);
    }
    return s;
  }

  protected values(): ExportedValue[] {
    return [...this.all.values()].map((s) => ({ labels: s.labels, value: s.value }));
  }
}

/** A histogram series: observe(v) counts v in the first bucket whose upper bound is >= v. */
export class HistogramSeries {
  /** Per bucket, not cumulative (cumulated at export). */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly labels: Labels, private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    if (i < b.length) this.counts[i]!++;
    this.sum += v;
    this.count++;
  }
}

export class FastHistogram extends ExposedMetric {
  readonly type = 'histogram';
  private readonly all = new Map<string, HistogramSeries>();

  constructor(
    name: string,
    help: string,
    private readonly labelNames: readonly string[],
    private readonly buckets: readonly number[],
    registry: Registry,
  ) {
    super(name, help, registry);
  }

  series(labels: Labels): HistogramSeries {
    const key = keyOf(this.labelNames, labels);
    let s = this.all.get(key);
    if (s === undefined) {
      s = new HistogramSeries({ ...labels }, this.buckets);
      this.all.set(key, s);
    }
    return s;
  }

  /** prom-client's order: per series its cumulative buckets (le first among the labels), +Inf, _sum, _count. */
  protected values(): ExportedValue[] {
    const out: ExportedValue[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.all.values()) {
      let acc = 0;
      for (const [i, le] of this.buckets.entries()) {
        acc += s.counts[i]!;
        out.push({ labels: { le, ...s.labels }, value: acc, metricName: bucket });
      }
      out.push({ labels: { le: '+Inf', ...s.labels }, value: s.count, metricName: bucket });
      out.push({ labels: s.labels, value: s.sum, metricName: `${this.name}_sum` });
      out.push({ labels: s.labels, value: s.count, metricName: `${this.name}_count` });
    }
    return out;
  }
}
