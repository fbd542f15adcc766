import type { State } from '../../health/status-collect.ts';
import { formatBytes } from '../../health/slot-wal.ts';
import type { StatusPoint, StatusView } from './sampler.ts';

/**
 * The status page's HTML, rendered here only: the first response carries
 * it whole, and /status/data carries the same fragments for the page's
 * script to swap in, so there is one renderer and no front-end build.
 */

export const esc = (s: unknown) => String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const BADGE: Record<State, string> = { ok: 'ok', warn: 'warn', unhealthy: 'bad', down: 'bad', error: 'bad' };
const badge = (s: State) => `<span class="badge ${BADGE[s]}">${esc(s)}</span>`;

export interface ChartSeries { label: string; values: Array<number | null> }
export interface ChartSpec { id: string; title: string; unit: string; series: ChartSeries[] }
export interface ChartData { t: number[]; charts: ChartSpec[] }

/** The four time series of the page, from the ring buffer (oldest first). */
export function chartData(points: readonly StatusPoint[], slot: string): ChartData {
  const groups = [...new Set(points.flatMap((p) => Object.keys(p.groups)))];
  const per = (f: (g: StatusPoint['groups'][string]) => number | null) =>
    groups.map((g) => ({ label: g, values: points.map((p) => (p.groups[g] ? f(p.groups[g]) : null)) }));
  return {
    t: points.map((p) => p.t),
    charts: [
      { id: 'throughput', title: 'Throughput', unit: 'msg/s', series: [
        { label: 'capture events', values: points.map((p) => p.captureEventsPerSec) },
        ...per((g) => g.appliedPerSec).map((s) => ({ ...s, label: `${s.label} applied` })),
      ] },
      { id: 'freshness', title: 'Freshness (now − source commit of the newest applied change)', unit: 's', series: per((g) => g.freshnessSeconds) },
      { id: 'lag', title: 'Lag per consumer group', unit: 'messages', series: per((g) => g.lag) },
      { id: 'wal', title: `WAL retained by slot ${slot}`, unit: 'bytes', series: [{ label: 'retained', values: points.map((p) => p.walRetainedBytes) }] },
    ],
  };
}

function table(head: string[], rows: string[][], attrs = ''): string {
  return `<table ${attrs}><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${
    rows.map((r) => `<tr>${r.join('')}</tr>`).join('')}</tbody></table>`;
}
const td = (v: unknown, attrs = '') => `<td${attrs ? ` ${attrs}` : ''}>${esc(v)}</td>`;

export type Sections = Record<'summary' | 'processes' | 'groups' | 'pipeline' | 'segments' | 'top', string>;

/** Every data section of the page, as HTML fragments keyed by element id. */
export function renderSections(v: StatusView | undefined): Sections {
  if (!v) {
    const wait = '<p class="muted">waiting for the first sample…</p>';
    return { summary: wait, processes: '', groups: '', pipeline: '', segments: '', top: '' };
  }
  const s = v.status;
  const summary = `${s.ok ? badge('ok') : badge('unhealthy')} pipeline ${s.ok ? 'healthy' : `UNHEALTHY: ${s.problems.length} problem(s)`}${
    s.warnings.length ? `, ${s.warnings.length} warning(s)` : ''} <span class="muted">sampled ${esc(v.sampledAt)}</span>${
    [...s.problems, ...s.warnings].map((p) => `<div class="note">${esc(p)}</div>`).join('')}`;
  const processes = table(['process', 'state', 'pid', 'detail'],
    s.processes.map((p) => [td(p.name), `<td>${badge(p.state)}</td>`, td(p.pid ?? '–'), td(p.detail)]), 'id="process-table"');
  const groups = table(['group', 'state', 'lag', 'partitions', 'last applied', 'detail'],
    s.groups.map((g) => [td(g.group, 'class="group"'), `<td>${badge(g.state)}</td>`, td(g.lag ?? '?', `class="lag" data-group="${esc(g.group)}"`), td(g.partitions), td(g.lastAppliedAt ?? 'never'), td(g.detail)]),
    'id="group-table"');
  const pipeline = table(['component', 'state', 'detail'], [
    [td(`slot ${s.slot.name}`), `<td>${badge(s.slot.state)}</td>`,
      td(s.slot.retainedBytes === null ? s.slot.detail : `${formatBytes(BigInt(s.slot.retainedBytes))} retained — ${s.slot.detail}`, 'id="slot-detail"')],
    [td('dead letters'), `<td>${badge(s.deadLetters.state)}</td>`, td(`${s.deadLetters.total ?? '?'} message(s); ${s.deadLetters.detail}`)],
    [td('redis outbox'), `<td>${badge(s.outbox.state)}</td>`, td(`depth ${s.outbox.depth ?? '?'}; ${s.outbox.detail}`)],
  ]);
  return { summary, processes, groups, pipeline, ...renderClv(v) };
}

const VALUE_ORDER = ['high', 'medium', 'low'];
const FREQ_ORDER = ['loyal', 'repeat', 'one_time'];
const order = (known: string[]) => (a: string, b: string) => {
  const ia = known.indexOf(a), ib = known.indexOf(b);
  return ia === -1 && ib === -1 ? a.localeCompare(b) : ia === -1 ? 1 : ib === -1 ? -1 : ia - ib;
};

function renderClv(v: StatusView): Pick<Sections, 'segments' | 'top'> {
  const { clv } = v;
  if (clv.error) {
    const msg = `<p class="note">CLV table not readable: ${esc(clv.error)}</p>`;
    return { segments: msg, top: '' };
  }
  const values = [...new Set(clv.segments.map((s) => s.valueSegment))].sort(order(VALUE_ORDER));
  const freqs = [...new Set(clv.segments.map((s) => s.frequencySegment))].sort(order(FREQ_ORDER));
  const count = (val: string, f: string) => clv.segments.find((s) => s.valueSegment === val && s.frequencySegment === f)?.customers ?? 0;
  const total = clv.segments.reduce((n, s) => n + s.customers, 0);
  const rows = values.map((val) => {
    const n = freqs.reduce((a, f) => a + count(val, f), 0);
    const pct = total > 0 ? (100 * n) / total : 0;
    return [td(val), ...freqs.map((f) => td(count(val, f), `data-segment="${esc(`${val}/${f}`)}"`)),
      td(n, `data-value-segment="${esc(val)}"`), `<td class="bar"><span style="width:${pct.toFixed(1)}%"></span> ${pct.toFixed(1)}%</td>`];
  });
  const segments = total === 0 ? '<p class="muted">no CLV rows yet</p>'
    : `${table(['value segment', ...freqs, 'customers', 'share'], rows, 'id="segment-table"')}<p class="muted">${total} customer(s) <span id="clv-total" data-total="${total}"></span></p>`;
  const top = clv.top.length === 0 ? '' : table(['customer', 'revenue', 'orders', 'items', 'avg order', 'value', 'frequency', 'last order'],
    clv.top.map((c) => [td(c.customerId), td(c.totalRevenue, 'class="num"'), td(c.totalOrders, 'class="num"'), td(c.totalItems, 'class="num"'),
      td(c.avgOrderValue, 'class="num"'), td(c.valueSegment), td(c.frequencySegment), td(c.lastOrderDate)]), 'id="top-table"');
  return { segments, top };
}

export interface PageOptions {
  sampleMs: number;
  /** False when a bearer token is configured and the request did not carry it: the shell only, data after sign-in. */
  authorized: boolean;
  authRequired: boolean;
}

const STYLE = `body{font:14px system-ui,sans-serif;margin:1.5rem;color:#1d2330;background:#f6f7f9}
h1{font-size:1.4rem;margin:0 0 .5rem}h2{font-size:1.05rem;margin:1.5rem 0 .5rem}
table{border-collapse:collapse;background:#fff;width:100%}th,td{border:1px solid #dde1e6;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#eef0f3;font-weight:600}td.num{text-align:right}.muted{color:#6b7280}.note{color:#92400e;margin:.2rem 0}
.badge{display:inline-block;border-radius:3px;padding:0 .4rem;font-weight:600}.badge.ok{background:#d1fae5;color:#065f46}
.badge.warn{background:#fef3c7;color:#92400e}.badge.bad{background:#fee2e2;color:#991b1b}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:1rem}.chart{background:#fff;border:1px solid #dde1e6;padding:.5rem}
td.bar span{display:inline-block;height:.7rem;background:#6366f1;vertical-align:middle}#signin{display:none;background:#fff;padding:1rem;border:1px solid #dde1e6}`;

/** The whole page; the script then refreshes the sections and charts from /status/data every sample. */
export function renderPage(sections: Sections, o: PageOptions): string {
  const sec = (id: keyof Sections, title: string) => `<h2>${esc(title)}</h2><div id="${id}">${o.authorized ? sections[id] : ''}</div>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>shopstream status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/status/uplot.min.css"><style>${STYLE}</style></head>
<body data-sample-ms="${o.sampleMs}" data-auth-required="${o.authRequired}">
<h1>shopstream pipeline status</h1>
<div id="summary">${o.authorized ? sections.summary : ''}</div>
<form id="signin"><p>This API requires a bearer token (API_AUTH_TOKEN). It stays in this tab's session storage and is sent as an Authorization header.</p>
<input type="password" id="token" autocomplete="off" placeholder="bearer token"> <button type="submit">show status</button></form>
${sec('processes', 'Processes')}
${sec('groups', 'Consumer groups')}
${sec('pipeline', 'Replication slot, dead letters, Redis outbox')}
<h2>Last minutes</h2><div class="charts">${['throughput', 'freshness', 'lag', 'wal'].map((id) => `<div class="chart" id="chart-${id}"></div>`).join('')}</div>
${sec('segments', 'CLV segments (customers)')}
${sec('top', 'Top customers by revenue')}
<script src="/status/uplot.iife.min.js"></script><script src="/status/page.js"></script>
</body></html>`;
}
