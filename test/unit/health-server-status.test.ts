import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatStatus } from '../../src/cli/status.ts';
import { HealthServer } from '../../src/health/health-server.ts';
import { HealthState } from '../../src/health/health-state.ts';
import { formatBytes } from '../../src/health/slot-wal.ts';
import { probeProcess, type PipelineStatus } from '../../src/health/status-collect.ts';

const log = pino({ level: 'silent' });

describe('HealthServer', () => {
  const registry = new Registry();
  const health = new HealthState(registry);
  const server = new HealthServer({ process: 'test-proc', host: '127.0.0.1', port: 0, health, registry, log });
  let base = '';
  let dir = '';
  beforeAll(async () => {
    await server.start();
    base = `http://127.0.0.1:${server.port}`;
    dir = await mkdtemp(path.join(tmpdir(), 'health-unit-'));
  });
  afterAll(async () => {
    await server.stop();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers /healthz, /readyz (200, then 503 with the reason), /metrics, 404 and 405', async () => {
    const hz = await fetch(`${base}/healthz`);
    expect(hz.status).toBe(200);
    expect(await hz.json()).toEqual({ status: 'ok', process: 'test-proc', pid: process.pid });
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    health.setCondition('retention-gap', { healthy: false, detail: 't/0: offsets 5..9 gone' });
    const rz = await fetch(`${base}/readyz`);
    expect(rz.status).toBe(503);
    const body = await rz.json() as { status: string; reason: string; conditions: Record<string, unknown> };
    expect(body).toMatchObject({ status: 'unready', reason: 'retention-gap: t/0: offsets 5..9 gone', conditions: { 'retention-gap': { healthy: false } } });
    const m = await fetch(`${base}/metrics`);
    expect(m.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await m.text()).toMatch(/health_condition\{condition="retention-gap"\} 0/);
    expect((await fetch(`${base}/nope`)).status).toBe(404);
    expect((await fetch(`${base}/healthz`, { method: 'POST' })).status).toBe(405);
    health.clearCondition('retention-gap');
  });

  it('status probe: ok from 200, unhealthy from 503, down when nothing answers, unhealthy when the pid lives but does not answer', async () => {
    expect(await probeProcess({ name: 'p', readyUrl: `${base}/readyz` }, 1000)).toMatchObject({ state: 'ok', http: 200, pid: process.pid });
    health.setCondition('watchdog', { healthy: false, detail: 'no progress for 61 s' });
    const bad = await probeProcess({ name: 'p', readyUrl: `${base}/readyz` }, 1000);
    expect(bad).toMatchObject({ state: 'unhealthy', http: 503 });
    expect(bad.detail).toMatch(/unready: watchdog: no progress for 61 s/);
    health.setCondition('watchdog', { healthy: true });
    const closed = new HealthServer({ process: 'x', host: '127.0.0.1', port: 0, health, registry: new Registry(), log });
    await closed.start();
    const deadUrl = `http://127.0.0.1:${closed.port}/readyz`;
    await closed.stop();
    expect(await probeProcess({ name: 'p', readyUrl: deadUrl }, 1000)).toMatchObject({ state: 'down', http: null, pid: null });
    const livePid = path.join(dir, 'live.pid');
    await writeFile(livePid, `${process.pid}\n`);
    const hung = await probeProcess({ name: 'p', readyUrl: deadUrl, pidFile: livePid }, 1000);
    expect(hung).toMatchObject({ state: 'unhealthy', pid: process.pid, pidAlive: true });
    const stalePid = path.join(dir, 'stale.pid');
    await writeFile(stalePid, '4194000\n');
    expect(await probeProcess({ name: 'p', readyUrl: deadUrl, pidFile: stalePid }, 1000)).toMatchObject({ state: 'down', pidAlive: false });
  });

  it('a port in use names its setting', async () => {
    const other = new HealthServer({ process: 'twin', host: '127.0.0.1', port: server.port!, portSetting: 'CONSUMER_HEALTH_PORT', health, registry, log });
    await expect(other.start()).rejects.toThrow(/already in use \(set CONSUMER_HEALTH_PORT to another port/);
  });
});

describe('status table', () => {
  it('one row per process, group, slot, dead letters and outbox, and a verdict line', () => {
    const s: PipelineStatus = {
      ok: false, checkedAt: '2026-12-01T00:00:00.000Z',
      processes: [
        { name: 'capture', state: 'ok', pid: 10, pidAlive: true, http: 200, detail: 'pid 10, ready' },
        { name: 'consumers', state: 'unhealthy', pid: 11, pidAlive: true, http: 503, detail: 'pid 11, unready: watchdog: no progress for 70 s' },
      ],
      groups: [{ group: 'warehouse', state: 'ok', lag: '42', partitions: 4, lastAppliedAt: '2026-12-01T00:00:00.000Z', detail: '4 partition(s)' }],
      slot: { name: 'shop_cdc', state: 'warn', retainedBytes: String(2 ** 31), unconfirmedBytes: '0', walStatus: 'reserved', active: true, activePid: 5, warnBytes: String(2 ** 30), detail: 'retains 2.0 GiB of WAL (warn at 1.0 GiB)' },
      deadLetters: { state: 'ok', total: '0', topics: [], detail: '' },
      outbox: { state: 'ok', depth: 0, oldestAgeSeconds: null, detail: 'empty' },
      problems: ['consumers: pid 11, unready: watchdog: no progress for 70 s'], warnings: ['slot shop_cdc: retains 2.0 GiB'],
    };
    const lines = formatStatus(s).split('\n');
    expect(lines[0]).toMatch(/^COMPONENT +STATE +DETAIL$/);
    expect(lines).toContainEqual(expect.stringMatching(/^process consumers +UNHEALTHY +pid 11, unready: watchdog/));
    expect(lines).toContainEqual(expect.stringMatching(/^group warehouse +ok +lag 42; last applied 2026-12-01T00:00:00.000Z; 4 partition\(s\)$/));
    expect(lines).toContainEqual(expect.stringMatching(/^slot shop_cdc +WARN +retains 2\.0 GiB of WAL/));
    expect(lines).toContainEqual('pipeline UNHEALTHY: 1 problem(s) (2026-12-01T00:00:00.000Z)');
  });

  it('formats byte counts', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(2n ** 30n)).toBe('1.0 GiB');
  });
});
