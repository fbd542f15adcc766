import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Service } from '../lifecycle/service.ts';
import type { Logger } from '../logger.ts';
import type { HealthState } from './health-state.ts';

export interface HealthServerOptions {
  /** Which process this is, in the JSON bodies (`capture`, `consumer-warehouse`, ...). */
  process: string;
  host: string;
  /** 0 picks a free port (tests); -1 disables the listener. */
  port: number;
  /** The variable that sets the port, named when it is taken (e.g. CONSUMER_HEALTH_PORT). */
  portSetting?: string;
  health: HealthState;
  registry: Registry;
  log: Logger;
}

/**
 * The health and metrics listener every pipeline process runs (the API and
 * the registry serve the same three routes on their own port):
 *
 * - `GET /healthz` — alive: 200 as long as the event loop answers. Never
 *   checks dependencies, so an outage elsewhere does not get a healthy
 *   process restarted.
 * - `GET /readyz` — ready and healthy: 200 when every HealthState condition
 *   is healthy, else 503 with `{status:'unready', reason, conditions}`.
 * - `GET /metrics` — the process's prom-client registry, Prometheus text.
 *
 * Plain node:http: three routes do not need a framework, and the listener
 * must stay up while the rest of the process is starting or stuck.
 */
export class HealthServer implements Service {
  readonly name = 'health-server';
  private server: Server | null = null;
  private stopping: Promise<void> | undefined;
  /** The bound port once listening (the real one when configured with 0). */
  port: number | null = null;

  constructor(private readonly o: HealthServerOptions) {}

  async start(): Promise<void> {
    if (this.o.port < 0 || this.server) return;
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') { res.writeHead(405, { allow: 'GET, HEAD' }).end(); return; }
      if (path === '/healthz') return json(res, 200, { status: 'ok', process: this.o.process, pid: process.pid });
      if (path === '/readyz') {
        const r = this.o.health.readiness();
        return json(res, r.ready ? 200 : 503, { status: r.ready ? 'ready' : 'unready', process: this.o.process, pid: process.pid, ...(r.ready ? {} : { reason: r.reasons.join('; ') }), conditions: r.conditions });
      }
      if (path === '/metrics') {
        this.o.registry.metrics().then(
          (body) => res.writeHead(200, { 'content-type': this.o.registry.contentType }).end(body),
          (err: Error) => { this.o.log.warn({ err: err.message }, 'metrics collection failed'); res.writeHead(500).end(err.message); },
        );
        return;
      }
      json(res, 404, { error: `no route ${path}`, routes: ['/healthz', '/readyz', '/metrics'] });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'EADDRINUSE'
        ? new Error(`health port ${this.o.host}:${this.o.port} is already in use${this.o.portSetting ? ` (set ${this.o.portSetting} to another port, or 0 for any free one)` : ''}: is another ${this.o.process} running?`, { cause: err })
        : err));
      server.listen(this.o.port, this.o.host, () => { server.off('error', reject); resolve(); });
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    this.o.log.info({ host: this.o.host, port: this.port, url: `http://${this.o.host}:${this.port}` }, 'health listening');
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const s = this.server;
      this.server = null;
      if (!s) return;
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    })();
    return this.stopping;
  }
}

function json(res: import('node:http').ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }).end(JSON.stringify(body));
}
