import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runH2load } from '../../bench/lookup/h2load.ts';

/**
 * bench:lookup's paced generator (bench/lookup/h2load.ts) against a real
 * node:http server with the real h2load binary (Debian's nghttp2-client,
 * installed by `scripts/stack.sh test-deps` and .ci/run): it holds the rate
 * it is given, every request reaches the server, and the per-request log is
 * read back to the last line.
 */
describe('bench:lookup h2load generator', () => {
  let server: Server;
  let url: string;
  const paths = new Map<string, number>();

  beforeAll(async () => {
    server = createServer((req, res) => {
      paths.set(req.url!, (paths.get(req.url!) ?? 0) + 1);
      const status = req.url === '/missing' ? 404 : 200;
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': 2 });
      res.end('{}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('sends the fixed rate over 100 req/s connections and reports every request', async () => {
    let n = 0;
    // Every 10th path is a 404, so the status column is read, not assumed.
    const r = await runH2load({ url, rate: 400, durationS: 2, inFlight: 4, path: () => (++n % 10 === 0 ? '/missing' : `/customers/${n}/clv`), paths: 100 });
    expect(r.connections).toBe(4);
    expect(r.perClientRps).toBe(100);
    const served = [...paths.values()].reduce((a, b) => a + b, 0);
    expect(r.requests).toBe(served);
    // 800 due in 2 s; what was due in the last tick may not have gone out.
    expect(r.requests).toBeGreaterThan(700);
    expect(r.requests).toBeLessThanOrEqual(810);
    expect(r.errors).toBe(0);
    expect(r.non2xx).toBe(paths.get('/missing'));
    expect(r.latenciesMs.length).toBe(r.requests - r.non2xx);
    expect(r.cpuS).toBeGreaterThanOrEqual(0);
    expect(r.cpuS).toBeLessThan(2);
  });
});
