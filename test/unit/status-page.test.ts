import { describe, expect, it } from 'vitest';
import { chartData, esc, renderPage, renderSections } from '../../src/api/status/page.ts';
import { aggregate, counterRate, parsePromText } from '../../src/api/status/prom-text.ts';
import { RingBuffer } from '../../src/api/status/ring-buffer.ts';
import type { StatusPoint, StatusView } from '../../src/api/status/sampler.ts';

describe('RingBuffer', () => {
  it('keeps the newest `capacity` items, oldest first', () => {
    const r = new RingBuffer<number>(3);
    expect(r.toArray()).toEqual([]);
    expect(r.last()).toBeUndefined();
    for (let i = 1; i <= 5; i++) r.push(i);
    expect(r.toArray()).toEqual([3, 4, 5]);
    expect(r.size).toBe(3);
    expect(r.last()).toBe(5);
    expect(() => new RingBuffer(0)).toThrow(RangeError);
  });
});

describe('Prometheus text', () => {
  const text = [
    '# HELP consumer_messages_applied_total x',
    '# TYPE consumer_messages_applied_total counter',
    'consumer_messages_applied_total{group="wh",topic="a"} 10',
    'consumer_messages_applied_total{group="wh",topic="b"} 5',
    'consumer_messages_applied_total{group="click",topic="c"} 7 1700000000000',
    'consumer_freshness_seconds{group="wh",topic="a"} 1.5',
    'consumer_freshness_seconds{group="wh",topic="b"} 4.25',
    'capture_events_total{table="shop.orders",op="c"} 3',
    'capture_events_total{table="shop.orders",op="u"} 2',
    'odd{label="a \\"quoted\\" \\\\ value"} +Inf',
  ].join('\n');

  it('parses names, labels (unescaped) and values', () => {
    const s = parsePromText(text);
    expect(s).toHaveLength(8);
    expect(s[2]).toEqual({ name: 'consumer_messages_applied_total', labels: { group: 'click', topic: 'c' }, value: 7 });
    expect(s[7]).toEqual({ name: 'odd', labels: { label: 'a "quoted" \\ value' }, value: Infinity });
  });

  it('sums, mins and maxes by a label', () => {
    const s = parsePromText(text);
    expect(aggregate(s, 'consumer_messages_applied_total', 'sum', 'group')).toEqual(new Map([['wh', 15], ['click', 7]]));
    expect(aggregate(s, 'consumer_freshness_seconds', 'max', 'group')).toEqual(new Map([['wh', 4.25]]));
    expect(aggregate(s, 'consumer_freshness_seconds', 'min', 'group')).toEqual(new Map([['wh', 1.5]]));
    expect(aggregate(s, 'capture_events_total', 'sum').get('')).toBe(5);
    expect(aggregate(s, 'absent_total', 'sum').size).toBe(0);
  });

  it('rates a counter, null across a reset or without an earlier reading', () => {
    expect(counterRate(10, 40, 2)).toBe(15);
    expect(counterRate(undefined, 40, 2)).toBeNull();
    expect(counterRate(40, 3, 2)).toBeNull();
    expect(counterRate(1, 2, 0)).toBeNull();
  });
});

const view: StatusView = {
  sampledAt: '2026-01-01T00:00:00.000Z',
  status: {
    ok: true, checkedAt: '2026-01-01T00:00:00.000Z', problems: [], warnings: ['group wh: <script>'],
    processes: [{ name: 'capture', state: 'ok', pid: 12, pidAlive: true, http: 200, detail: 'pid 12, ready' }],
    groups: [{ group: 'wh', state: 'ok', lag: '3', partitions: 4, lastAppliedAt: null, detail: '' }],
    slot: { name: 's', state: 'ok', retainedBytes: '2048', unconfirmedBytes: '0', walStatus: 'reserved', active: true, activePid: 1, warnBytes: '1', detail: 'fine' },
    deadLetters: { state: 'ok', total: '0', topics: [], detail: 'none' },
    outbox: { state: 'ok', depth: 0, oldestAgeSeconds: null, detail: 'empty' },
  },
  clv: {
    error: null,
    segments: [
      { valueSegment: 'low', frequencySegment: 'one_time', customers: 6 },
      { valueSegment: 'high', frequencySegment: 'repeat', customers: 2 },
      { valueSegment: 'low', frequencySegment: 'repeat', customers: 2 },
    ],
    top: [],
  },
};

describe('status page rendering', () => {
  it('escapes what it renders', () => {
    expect(esc('<a href="x">&\'')).toBe('&#60;a href=&#34;x&#34;&#62;&#38;&#39;');
    const s = renderSections(view);
    expect(s.summary).toContain('&#60;script&#62;');
    expect(s.summary).not.toContain('<script>');
  });

  it('lays segments out value × frequency with totals and shares', () => {
    const s = renderSections(view).segments;
    expect(s).toMatch(/<th>repeat<\/th><th>one_time<\/th>/);
    expect(s).toContain('data-segment="high/repeat">2<');
    expect(s).toContain('data-segment="high/one_time">0<');
    expect(s).toContain('data-value-segment="low">8<');
    expect(s).toContain('80.0%');
    expect(s).toContain('data-total="10"');
    expect(s.indexOf('>high<')).toBeLessThan(s.indexOf('>low<'));
  });

  it('shows the shell without data to an unauthorized request', () => {
    const html = renderPage(renderSections(view), { sampleMs: 500, authorized: false, authRequired: true });
    expect(html).not.toContain('pid 12');
    expect(html).toContain('data-auth-required="true"');
    expect(renderPage(renderSections(view), { sampleMs: 500, authorized: true, authRequired: false })).toContain('pid 12, ready');
  });

  it('turns the ring buffer into aligned chart series, a group missing early as nulls', () => {
    const pts: StatusPoint[] = [
      { t: 1, captureEventsPerSec: null, walRetainedBytes: 10, groups: { wh: { appliedPerSec: null, freshnessSeconds: 1, lag: 0 } } },
      { t: 2, captureEventsPerSec: 5, walRetainedBytes: 20, groups: { wh: { appliedPerSec: 4, freshnessSeconds: 2, lag: 1 }, click: { appliedPerSec: 1, freshnessSeconds: null, lag: 0 } } },
    ];
    const d = chartData(pts, 'slot1');
    expect(d.t).toEqual([1, 2]);
    const by = Object.fromEntries(d.charts.map((c) => [c.id, c]));
    expect(by.throughput!.series).toEqual([
      { label: 'capture events', values: [null, 5] },
      { label: 'wh applied', values: [null, 4] },
      { label: 'click applied', values: [null, 1] },
    ]);
    expect(by.lag!.series).toEqual([{ label: 'wh', values: [0, 1] }, { label: 'click', values: [null, 0] }]);
    expect(by.wal!.series[0]!.values).toEqual([10, 20]);
    expect(by.wal!.title).toContain('slot1');
  });
});
