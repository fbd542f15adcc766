import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from '../logger.ts';
import { bearerChecker } from './auth.ts';
import type { ClvPostgres } from './clv-pg.ts';
import { ClvLookup, type ClvCache } from './clv-lookup.ts';
import { ErrorAnswers } from './error-answer.ts';
import { unauthorized } from './errors.ts';
import { ClvFastLane } from './fast-lane.ts';
import { NowClock } from './instant.ts';
import type { ApiMetrics } from './metrics.ts';
import type { RecencyThresholds } from './recency.ts';
import { registerClvRoutes } from './routes-clv.ts';
import { registerOpsRoutes } from './routes-ops.ts';
import { registerStatusRoutes, STATUS_PUBLIC_ROUTES } from './status/routes.ts';
import type { StatusSampler } from './status/sampler.ts';

export interface AppDeps {
  pg: ClvPostgres;
  cache: ClvCache;
  metrics: ApiMetrics;
  recency: RecencyThresholds;
  /** When set, every route but /healthz requires `Authorization: Bearer <authToken>`. */
  authToken: string | undefined;
  log: Logger;
  /**
   * Serve GET /customers/:id/clv on the fast lane (src/api/fast-lane.ts);
   * false: Fastify serves it like every other route (API_FAST_LANE=false).
   */
  fastLane: boolean;
  /** The status page (docs/status-page.md); absent with STATUS_PAGE=false. */
  status?: { sampler: StatusSampler; sampleMs: number; slot: string };
}

// Probes must work without credentials so orchestrators need no secret; it reveals nothing.
// Neither does the status page's shell: its data comes from /status/data, which needs the token.
const PUBLIC_ROUTES = new Set<string>(['/healthz', ...STATUS_PUBLIC_ROUTES]);

/**
 * The HTTP surface of the CLV API (docs/api.md), not yet listening: the
 * Fastify app, and the fast lane its listener hands lookups to first (absent
 * with `fastLane: false`).
 */
export function buildApiApp(deps: AppDeps): { app: FastifyInstance; lane: ClvFastLane | undefined } {
  const { log, metrics } = deps;
  const httpLog = log.child({ component: 'http' });
  // Built once the routes' dependencies are; the server may exist before.
  let lane: ClvFastLane | undefined;
  const app = Fastify({
    loggerInstance: httpLog as FastifyBaseLogger,
    // The listener is ours so that lookups can be taken before Fastify sees them; set up as Fastify sets up its own.
    serverFactory: (handler, options) => {
      // Fastify's own defaults by the time it calls the factory (fastify.js fills them in).
      const opts = options as { keepAliveTimeout: number; requestTimeout: number; connectionTimeout: number; maxRequestsPerSocket: number };
      const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
        if (lane === undefined || !lane.handle(req, res)) handler(req, res);
      });
      server.keepAliveTimeout = opts.keepAliveTimeout;
      server.requestTimeout = opts.requestTimeout;
      server.setTimeout(opts.connectionTimeout);
      if (opts.maxRequestsPerSocket > 0) server.maxRequestsPerSocket = opts.maxRequestsPerSocket;
      return server;
    },
    // Fastify's per-request logs would carry the request headers' neighbourhood; ours log
    // method, route and status only, so the Authorization header can never end up in a log.
    logController: new LogController({ disableRequestLogging: true }),
    // req.log is the app's logger itself, not a child per request: a child costs
    // a redaction set-up per request, and no line of ours needs a request id.
    childLoggerFactory: (logger) => logger,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
    // No route takes a body.
    bodyLimit: 1024,
  });

  const authorized = deps.authToken !== undefined ? bearerChecker(deps.authToken) : () => true;
  if (deps.authToken !== undefined) {
    // Hooks in callback form: an async hook costs a promise per request.
    app.addHook('onRequest', (req, reply, done) => {
      if (PUBLIC_ROUTES.has(req.routeOptions.url ?? '') || authorized(req.headers.authorization)) return done();
      reply.header('www-authenticate', 'Bearer');
      done(unauthorized());
    });
  }

  app.addHook('onResponse', (req, reply, done) => {
    metrics.observeRequest(req.method, req.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
    done();
  });

  const errors = new ErrorAnswers(httpLog);
  app.setErrorHandler((err, req, reply) => {
    const a = errors.answer(err, req.method, req.routeOptions.url);
    return reply.code(a.status).send(a.body);
  });

  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ error: `no route ${req.method} ${req.url.split('?')[0]}`, code: 'NOT_FOUND' }));

  const lookup = new ClvLookup(deps.cache, deps.pg, metrics, log);
  const clock = new NowClock();
  registerClvRoutes(app, { lookup, pg: deps.pg, recency: deps.recency, clock });
  if (deps.fastLane) {
    lane = new ClvFastLane({ lookup, clock, recency: deps.recency, authorized: deps.authToken !== undefined ? authorized : undefined, metrics, errors });
    const closing = lane;
    app.addHook('preClose', (done) => {
      closing.closing = true;
      done();
    });
  }
  registerOpsRoutes(app, { pg: deps.pg, cache: deps.cache, metrics });
  if (deps.status) registerStatusRoutes(app, { ...deps.status, authRequired: deps.authToken !== undefined, authorized });
  return { app, lane };
}
