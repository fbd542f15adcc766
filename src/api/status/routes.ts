import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { FastifyInstance } from 'fastify';
import { chartData, renderPage, renderSections } from './page.ts';
import type { StatusSampler } from './sampler.ts';

export interface StatusRouteDeps {
  sampler: StatusSampler;
  sampleMs: number;
  slot: string;
  authRequired: boolean;
  /** The bearer check of src/api/auth.ts (always true without a token). */
  authorized: (authorization: string | undefined) => boolean;
}

/**
 * The page shell and its static files carry no pipeline data, so they are
 * served without a token like /healthz; the data (/status/data, and the
 * sections inside /status) only to an authorized request.
 */
export const STATUS_PUBLIC_ROUTES = ['/status', '/status/page.js', '/status/uplot.iife.min.js', '/status/uplot.min.css'] as const;

const require = createRequire(import.meta.url);
// Resolved through node_modules, so the tsx sources, dist/ and the runtime image all find uPlot (a production dependency).
const asset = (spec: string) => readFileSync(require.resolve(spec), 'utf8');

export function registerStatusRoutes(app: FastifyInstance, deps: StatusRouteDeps): void {
  const files: Record<string, [string, string]> = {
    '/status/uplot.iife.min.js': ['text/javascript; charset=utf-8', asset('uplot/dist/uPlot.iife.min.js')],
    '/status/uplot.min.css': ['text/css; charset=utf-8', asset('uplot/dist/uPlot.min.css')],
    '/status/page.js': ['text/javascript; charset=utf-8', readFileSync(new URL('./page-script.js', import.meta.url), 'utf8')],
  };
  for (const [route, [type, body]] of Object.entries(files)) {
    app.get(route, async (_req, reply) => reply.header('content-type', type).header('cache-control', 'public, max-age=300').send(body));
  }

  app.get('/status', async (req, reply) => {
    const authorized = deps.authorized(req.headers.authorization);
    const html = renderPage(renderSections(authorized ? deps.sampler.latest : undefined), { sampleMs: deps.sampleMs, authorized, authRequired: deps.authRequired });
    return reply.header('content-type', 'text/html; charset=utf-8').header('cache-control', 'no-store').send(html);
  });

  // Behind the API's bearer check (app.ts): not in STATUS_PUBLIC_ROUTES.
  app.get('/status/data', async (_req, reply) => {
    const view = deps.sampler.latest;
    return reply.header('cache-control', 'no-store').send({
      sampledAt: view?.sampledAt ?? null,
      ok: view?.status.ok ?? null,
      sampleMs: deps.sampleMs,
      sections: renderSections(view),
      charts: chartData(deps.sampler.history.toArray(), deps.slot),
      status: view?.status ?? null,
      clv: view?.clv ?? null,
    });
  });
}
