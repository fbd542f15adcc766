import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { createHarness, REPO, waitFor, type Harness } from '../../bench/capture/harness.ts';
import { uniqueId } from '../helpers/stack-env.ts';

/**
 * The capture's watchdog against a real stall: the capture runs as a child
 * process whose schema registry accepts connections and never answers, so
 * the first change to a table blocks streaming on its schema registration
 * while WAL keeps coming (heartbeats, the rest of the cluster). /readyz
 * turns 503 with the watchdog's reason, then the process exits non-zero.
 */
describe('capture watchdog', () => {
  let h: Harness | undefined;
  let child: ChildProcess | undefined;
  let blackhole: Server | undefined;
  const sockets: Socket[] = [];

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await new Promise((r) => child!.once('exit', r));
    }
    for (const s of sockets) s.destroy();
    await new Promise((r) => (blackhole ? blackhole.close(r) : r(undefined)));
    await h?.cleanup();
  });

  it('a capture blocked with WAL waiting turns unready, then exits non-zero', async () => {
    h = await createHarness(uniqueId('cap_stall'));
    blackhole = createServer((s) => { sockets.push(s); s.on('error', () => {}); });
    await new Promise<void>((r) => blackhole!.listen(0, '127.0.0.1', () => r()));
    const registryUrl = `http://127.0.0.1:${(blackhole.address() as AddressInfo).port}`;
    child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/capture.ts'], {
      cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'],
      env: {
        ...h.env, SCHEMA_REGISTRY_URL: registryUrl, CAPTURE_SNAPSHOT: 'never', CAPTURE_METRICS_PORT: '0', LOG_LEVEL: 'info',
        WATCHDOG_UNHEALTHY_MS: '2000', WATCHDOG_EXIT_MS: '10000', WATCHDOG_INTERVAL_MS: '500', CAPTURE_WATCHDOG_IDLE_BYTES: '0',
      } as NodeJS.ProcessEnv,
    });
    const lines: string[] = [];
    const port = await new Promise<number>((resolve, reject) => {
      createInterface({ input: child!.stdout! }).on('line', (l) => {
        lines.push(l);
        try {
          const j = JSON.parse(l) as { msg?: string; port?: number };
          if (j.msg === 'health listening' && typeof j.port === 'number') resolve(j.port);
        } catch { /* not JSON */ }
      });
      child!.once('exit', (c) => reject(new Error(`capture exited ${c}: ${lines.slice(-5).join('\n')}`)));
    });
    const get = async (p: string) => { const r = await fetch(`http://127.0.0.1:${port}${p}`); return { status: r.status, text: await r.text() }; };
    // Streaming and moving (heartbeats confirm), so ready.
    await waitFor('capture ready', async () => (await get('/readyz')).status === 200, 60_000);
    await new Promise((r) => setTimeout(r, 3000));
    expect((await get('/readyz')).status, 'an idle capture is not stalled').toBe(200);

    const exit = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
    await h.pool.query(`INSERT INTO ${h.id}.customers (customer_id, email, first_name, last_name, customer_segment) VALUES (1, 'a@x', 'A', 'B', 'gold')`);
    const unready = await waitFor('capture unready', async () => {
      const r = await get('/readyz');
      return r.status === 503 && /watchdog: no progress/.test(r.text) ? r : null;
    }, 30_000);
    expect(JSON.parse(unready.text).reason).toMatch(/watchdog: no progress for \d+ s with work pending \(.* of WAL unconfirmed\)/);
    expect(await Promise.race([exit, new Promise((r) => setTimeout(() => r('timeout'), 40_000))])).toBe(1);
    expect(lines.some((l) => /watchdog: stalled; exiting/.test(l))).toBe(true);
  });
});
