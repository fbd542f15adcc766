import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import type { Logger } from '../logger.ts';
import { bearerChecker } from './auth.ts';
import type { ClvPostgres } from './clv-pg.ts';
import { ClvLookup, type ClvCache } from './clv-lookup.ts';
import { ApiError } from './errors.ts';
import { LogThrottle } from './log-throttle.ts';
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
  /** The status page (docs/status-page.md); absent with STATUS_PAGE=false. */
  status?: { sampler: StatusSampler; sampleMs: number; slot: string };
}

// Probes must work without credentials so orchestrators need no secret; it reveals nothing.
// Neither does the status page's shell: its data comes from /status/data, which needs the token.
const PUBLIC_ROUTES = new Set<string>(['/healthz', ...STATUS_PUBLIC_ROUTES]);

/** The HTTP surface of the CLV API (docs/api.md), without the listener, so tests can inject requests. */
export function buildApiApp(deps: AppDeps): FastifyInstance {
  const { log, metrics } = deps;
  const app = Fastify({
    loggerInstance: log.child({ component: 'http' }) as FastifyBaseLogger,
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
      done(new ApiError(401, 'UNAUTHORIZED', 'missing or wrong bearer token'));
    });
  }

  app.addHook('onResponse', (req, reply, done) => {
    metrics.observeRequest(req.method, req.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
    done();
  });

  const throttle = new LogThrottle();
  app.setErrorHandler((err: FastifyError | ApiError, req, reply) => {
    if (err instanceof ApiError) {
      if (err.status >= 500) {
        const suppressed = throttle.admit(err.code);
        if (suppressed !== undefined) req.log.error({ err: err.cause ?? err, method: req.method, route: req.routeOptions.url, suppressed }, err.message);
      }
      return reply.code(err.status).send(err.toBody());
    }
    const status = (err as FastifyError).statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return reply.code(status).send({ error: err.message, code: 'BAD_REQUEST' });
    }
    const suppressed = throttle.admit('INTERNAL');
    if (suppressed !== undefined) req.log.error({ err, method: req.method, route: req.routeOptions.url, suppressed }, 'request failed');
    return reply.code(500).send({ error: 'internal error', code: 'INTERNAL' });
  });

  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ error: `no route ${req.method} ${req.url.split('?')[0]}`, code: 'NOT_FOUND' }));

  const lookup = new ClvLookup(deps.cache, deps.pg, metrics, log);
  registerClvRoutes(app, { lookup, pg: deps.pg, recency: deps.recency });
  registerOpsRoutes(app, { pg: deps.pg, cache: deps.cache, metrics });
  if (deps.status) registerStatusRoutes(app, { ...deps.status, authRequired: deps.authToken !== undefined, authorized });
  return app;
}
