import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { createHarness, waitFor, type Harness } from '../../bench/capture/harness.ts';
import { TrafficGenerator } from '../../src/generator/writer.ts';
import type { WarehouseSchemas } from '../../src/sinks/postgres/pool.ts';
import { createTestWarehouse, dropTestWarehouse } from '../helpers/pipeline-cleanup.ts';
import { healthListening, spawnCli, type CliProcess } from '../helpers/spawn-cli.ts';
import { stackEnv, uniqueId } from '../helpers/stack-env.ts';

/**
 * Issue 16, the status page in a real browser: the capture, the warehouse
 * consumer and the API run as `shopstream` children (own slot, topic
 * prefix, group, schemas, Redis prefix; health ports picked by the OS; the
 * API with a bearer token), generated orders flow through them, and
 * Debian's headless Chromium opens /status. The test waits until the
 * charts have drawn non-zero points from real samples, checks the tables
 * against Postgres, and leaves a screenshot in test-results/status-page.png.
 * Without Chromium it is skipped locally; under CI=true it fails instead.
 */
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const SCREENSHOT = path.join(REPO, 'test-results', 'status-page.png');
const haveChromium = existsSync(CHROMIUM);
const TOKEN = 'status-page-test-token-0123456789';

describe.skipIf(!haveChromium && process.env.CI !== 'true')('status page in headless Chromium', () => {
  let h: Harness | undefined;
  let wh: pg.Pool | undefined;
  let schemas: WarehouseSchemas | undefined;
  let browser: Browser | undefined;
  let pidDir: string | undefined;
  const children: CliProcess[] = [];
  const redis = new Redis(stackEnv.redisUrl, { maxRetriesPerRequest: 1 });

  afterAll(async () => {
    await browser?.close().catch(() => {});
    for (const c of [...children].reverse()) await c.stop();
    await h?.cleanup();
    await dropTestWarehouse(wh, schemas, redis, h?.id);
    await wh?.end();
    redis.disconnect();
    if (pidDir) await rm(pidDir, { recursive: true, force: true });
  });

  it('draws the charts from real samples and shows the groups and CLV segments Postgres holds', async () => {
    expect(haveChromium, `${CHROMIUM} is missing: install Debian's chromium package (.ci/run does)`).toBe(true);
    h = await createHarness(uniqueId('statuspage'));
    const s = h.id;
    const tw = await createTestWarehouse(s);
    ({ schemas, pool: wh } = tw);
    const group = tw.group;
    const env: NodeJS.ProcessEnv = {
      ...process.env, ...h.env,
      ...tw.env, CLICKSTREAM_GROUP: `${s}_click`, CLICKSTREAM_TOPIC: `${s}.clickstream`,
      CAPTURE_METRICS_PORT: '0', CONSUMER_HEALTH_PORT: '0', CLICKSTREAM_HEALTH_PORT: '-1', CAPTURE_SNAPSHOT: 'initial', LOG_LEVEL: 'info',
      CONSUMER_TOPIC_WAIT_MS: '3000', CONSUMER_SESSION_TIMEOUT_MS: '6000', WATCHDOG_INTERVAL_MS: '500',
    };
    const gen = new TrafficGenerator(h.pool, { schema: s, seed: 16 });
    await gen.seedCatalog(40, 12);
    await gen.placeOrders(20, 2);

    const capture = spawnCli(['capture'], env);
    children.push(capture);
    const consumer = spawnCli(['consume', 'warehouse'], env);
    children.push(consumer);
    const [capturePort, consumerPort] = await Promise.all([
      capture.waitForLog(healthListening, 'health listening', 90_000).then((j) => j.port as number),
      consumer.waitForLog(healthListening, 'health listening', 90_000).then((j) => j.port as number),
    ]);
    pidDir = await mkdtemp(path.join(tmpdir(), 'status-page-'));
    await writeFile(path.join(pidDir, 'capture.pid'), `${capture.proc.pid}\n`);
    await writeFile(path.join(pidDir, 'consumers.pid'), `${consumer.proc.pid}\n`);
    const api = spawnCli(['api'], {
      ...env, API_PORT: '0', API_AUTH_TOKEN: TOKEN, STATUS_SAMPLE_MS: '500', STATUS_PID_DIR: pidDir,
      CAPTURE_METRICS_PORT: String(capturePort), CONSUMER_HEALTH_PORT: String(consumerPort),
    });
    children.push(api);
    const apiUrl = (await api.waitForLog((j) => j.msg === 'listening' && typeof j.url === 'string', 'listening', 90_000)).url as string;

    // The data needs the token; the shell does not (and carries no data).
    expect((await fetch(`${apiUrl}/status/data`)).status).toBe(401);
    const shell = await fetch(`${apiUrl}/status`);
    expect(shell.status).toBe(200);
    expect(await shell.text()).not.toContain(group);

    // Orders keep arriving while the page samples, so the throughput series has something to show.
    const traffic = new AbortController();
    const writing = (async () => {
      while (!traffic.signal.aborted) {
        await gen.placeOrders(3, 1);
        await new Promise((r) => setTimeout(r, 250));
      }
    })();
    const clvRows = async () => Number((await wh!.query(`SELECT count(*) AS n FROM "${schemas!.analytics}".customer_lifetime_value`)).rows[0].n);
    try {
      await waitFor('CLV rows from the pipeline', async () => (await clvRows()) > 0, 120_000);

      browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
      const page = await browser.newPage({ viewport: { width: 1280, height: 1500 } });
      const pageErrors: string[] = [];
      page.on('pageerror', (e) => pageErrors.push(e.message));
      await page.goto(`${apiUrl}/status#token=${TOKEN}`);
      // Non-zero throughput points of the capture and of the group, from real samples.
      await page.waitForFunction((g) => {
        const sp = (window as unknown as { statusPage?: { charts: Record<string, { plot: { data: Array<Array<number | null>>; series: Array<{ label?: string }> } }> } }).statusPage;
        const plot = sp?.charts.throughput?.plot;
        if (!plot) return false;
        const nonZero = (label: string) => {
          const i = plot.series.findIndex((x) => x.label === label);
          return i > 0 && plot.data[i]!.some((v) => typeof v === 'number' && v > 0);
        };
        return nonZero('capture events') && nonZero(`${g} applied`) && Object.keys(sp!.charts).length === 4;
      }, group, { timeout: 90_000, polling: 250 });

      // Live: the page keeps refreshing from new samples.
      await page.waitForFunction(() => ((window as unknown as { statusPage: { updates: number } }).statusPage.updates >= 3), undefined, { timeout: 30_000 });
      // Every chart is drawn: a canvas each, with painted pixels, and a point per sample.
      const drawn = await page.evaluate(() => {
        const sp = (window as unknown as { statusPage: { updates: number; charts: Record<string, { plot: { data: Array<Array<number | null>> } }> } }).statusPage;
        return {
          updates: sp.updates,
          points: Object.fromEntries(Object.entries(sp.charts).map(([id, c]) => [id, c.plot.data[0]!.length])),
          painted: [...document.querySelectorAll('.chart canvas')].map((c) => {
            const cv = c as HTMLCanvasElement;
            const px = cv.getContext('2d')!.getImageData(0, 0, cv.width, cv.height).data;
            let n = 0;
            for (let i = 3; i < px.length; i += 4) if (px[i]! > 0) n++;
            return n;
          }),
        };
      });
      expect(drawn.painted).toHaveLength(4);
      for (const n of drawn.painted) expect(n).toBeGreaterThan(500);
      expect(drawn.updates).toBeGreaterThanOrEqual(3);
      for (const n of Object.values(drawn.points)) expect(n).toBeGreaterThan(2);
      const walMax = await page.evaluate(() => Math.max(...((window as unknown as { statusPage: { charts: { wal: { plot: { data: number[][] } } } } }).statusPage.charts.wal.plot.data[1]!.filter((v) => v !== null))));
      expect(walMax).toBeGreaterThan(0);

      // Stop writing; once the group caught up, the page's figures must equal Postgres's.
      traffic.abort();
      await writing;
      const applied = async () => Number((await wh!.query(`SELECT coalesce(sum(next_offset), 0) AS n FROM "${schemas!.meta}".consumer_offsets WHERE consumer_group = $1`, [group])).rows[0].n);
      const { rows: segRows } = await waitFor('warehouse caught up', async () => {
        const a = await applied();
        await new Promise((r) => setTimeout(r, 1500));
        if (a !== (await applied())) return null;
        const lag = await page.locator(`td.lag[data-group="${group}"]`).textContent();
        return lag === '0' ? wh!.query<{ v: string; f: string; n: number }>(
          `SELECT value_segment AS v, frequency_segment AS f, count(*)::int AS n FROM "${schemas!.analytics}".customer_lifetime_value GROUP BY 1, 2`) : null;
      }, 60_000);
      const expected = Object.fromEntries(segRows.map((r) => [`${r.v}/${r.f}`, String(r.n)]));
      const total = segRows.reduce((n, r) => n + r.n, 0);
      const shown = await waitFor('segments on the page equal Postgres', async () => {
        const cells = await page.$$eval('[data-segment]', (tds) => Object.fromEntries(tds.map((td) => [td.getAttribute('data-segment')!, td.textContent!])));
        const nonZero = Object.fromEntries(Object.entries(cells).filter(([, n]) => n !== '0'));
        const norm = (o: Record<string, string>) => JSON.stringify(Object.entries(o).sort());
        return norm(nonZero) === norm(expected) ? nonZero : null;
      }, 30_000);
      expect(shown).toEqual(expected);
      expect(await page.locator('#clv-total').getAttribute('data-total')).toBe(String(total));

      // The group tables list both groups; processes that run are ok, with their pids.
      const groupsShown = await page.locator('#group-table td.group').allTextContents();
      expect(groupsShown).toEqual([group, `${s}_click`]);
      const procs = Object.fromEntries(await page.$$eval('#process-table tbody tr', (trs) => trs.map((tr) => {
        const td = [...tr.querySelectorAll('td')].map((x) => x.textContent ?? '');
        return [td[0]!, { state: td[1]!, pid: td[2]! }];
      })));
      expect(Object.keys(procs)).toEqual(['capture', 'consumers', 'clickstream', 'api', 'registry']);
      expect(procs.capture).toEqual({ state: 'ok', pid: String(capture.proc.pid) });
      expect(procs.consumers).toEqual({ state: 'ok', pid: String(consumer.proc.pid) });
      expect(procs.api).toEqual({ state: 'ok', pid: String(api.proc.pid) });
      expect(procs.clickstream!.state).toBe('warn'); // CLICKSTREAM_HEALTH_PORT=-1: nothing to probe
      const { rows: [topDb] } = await wh.query(`SELECT customer_id::text AS id, total_revenue::text AS rev FROM "${schemas.analytics}".customer_lifetime_value ORDER BY total_revenue DESC, customer_id LIMIT 1`);
      expect(await page.locator('#top-table tbody tr:first-child td').first().textContent()).toBe(topDb.id);
      expect(await page.locator('#top-table tbody tr:first-child td.num').first().textContent()).toBe(topDb.rev);
      expect(await page.locator('#slot-detail').textContent()).toMatch(/retained/);
      expect(pageErrors).toEqual([]);

      // The API's own gauge carries the same distribution for Prometheus.
      const metrics = await (await fetch(`${apiUrl}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
      const gauged = segRows.every((r) => metrics.includes(`api_clv_segment_customers{value_segment="${r.v}",frequency_segment="${r.f}"} ${r.n}`));
      expect(gauged, metrics.split('\n').filter((l) => l.startsWith('api_clv_segment')).join('\n')).toBe(true);

      await mkdir(path.dirname(SCREENSHOT), { recursive: true });
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
      expect(existsSync(SCREENSHOT)).toBe(true);
      console.log(`status page screenshot: ${SCREENSHOT}`);
    } finally {
      traffic.abort();
      await writing.catch(() => {});
    }
    // Clean stops: each child exits 0 on SIGTERM.
    for (const c of children.splice(0).reverse()) expect(await c.stop(), c.lines.slice(-5).join('\n')).toEqual({ code: 0, signal: null });
  }, 300_000);
});
