import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ClvLookup } from './clv-lookup.ts';
import { clvJson } from './clv-record.ts';
import type { ErrorAnswers } from './error-answer.ts';
import { unauthorized } from './errors.ts';
import type { NowClock } from './instant.ts';
import type { RouteRecorder, ApiMetrics } from './metrics.ts';
import type { RecencyThresholds } from './recency.ts';
import { lookUpClv } from './routes-clv.ts';

/**
 * GET /customers/:id/clv on plain node:http, in front of Fastify. The lookup
 * is the API's hot path and most of its cost per request was Fastify's
 * (request and reply objects, routing, hooks, the serializer's object) rather
 * than the lookup's; here a request is matched by hand, looked up through
 * the same lookUpClv (validation, Redis, Postgres fallback, recency at read
 * time) and answered with clvJson, the compiled serializer's exact bytes.
 *
 * What the lane takes is deliberately narrow: GET, the path
 * `/customers/<digits>/clv` (optionally with the trailing slash Fastify
 * ignores), and no query or only `as_of=` with characters no decoder
 * changes. Anything else (percent-encoding, other parameters, HEAD, a
 * closing server) goes to Fastify untouched, so it never has to reproduce
 * Fastify's decoding. Answers, errors included, are byte-identical to the
 * Fastify route's (test/integration/api-fast-lane.test.ts); errors go
 * through the same ErrorAnswers, auth through the same checker, and the
 * request is counted in the same metrics series.
 */

export const CLV_ROUTE = '/customers/:id/clv';
const PREFIX = '/customers/';
const SUFFIX = '/clv';
const AS_OF = 'as_of=';
/** Fastify's maxParamLength (src/api/app.ts): a longer id is its 414, not ours. */
const MAX_ID_LENGTH = 200;
const SLASH = 0x2f;
const QUESTION = 0x3f;

export interface ClvUrl {
  /** The id segment as sent (digits, not yet validated). */
  id: string;
  as_of: string | undefined;
}

/** [0-9A-Za-z:.-_]: what an as_of can hold that every query decoder reads as itself. */
function plain(c: number): boolean {
  return (c >= 48 && c <= 58) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 45 || c === 46 || c === 95;
}

/** The parts of a URL the lane serves, or undefined: Fastify's. Pure, unit-tested. */
export function matchClvUrl(url: string): ClvUrl | undefined {
  if (!url.startsWith(PREFIX)) return undefined;
  const from = PREFIX.length;
  let i = from;
  while (i < url.length) {
    const c = url.charCodeAt(i);
    if (c < 48 || c > 57) break;
    i++;
  }
  if (i === from || i - from > MAX_ID_LENGTH || !url.startsWith(SUFFIX, i)) return undefined;
  const id = url.slice(from, i);
  i += SUFFIX.length;
  if (i < url.length && url.charCodeAt(i) === SLASH) i++;
  if (i === url.length) return { id, as_of: undefined };
  if (url.charCodeAt(i) !== QUESTION) return undefined;
  const q = i + 1;
  if (q === url.length) return { id, as_of: undefined };
  if (!url.startsWith(AS_OF, q)) return undefined;
  for (let j = q + AS_OF.length; j < url.length; j++) if (!plain(url.charCodeAt(j))) return undefined;
  return { id, as_of: url.slice(q + AS_OF.length) };
}

export interface FastLaneDeps {
  lookup: ClvLookup;
  clock: NowClock;
  recency: RecencyThresholds;
  /** The bearer check of src/api/auth.ts; undefined when auth is off. */
  authorized: ((authorization: string | undefined) => boolean) | undefined;
  metrics: ApiMetrics;
  errors: ErrorAnswers;
}

const JSON_TYPE = 'application/json; charset=utf-8';

export class ClvFastLane {
  /** Set when Fastify starts closing: from then on Fastify answers (its 503 while closing). */
  closing = false;
  /** Requests this lane answered (the rest went to Fastify): for tests and diagnostics. */
  served = 0;
  private readonly record: RouteRecorder;
  /** Header list of a 200, its content-length filled in per answer (writeHead reads it synchronously). */
  private readonly okHeaders = ['content-type', JSON_TYPE, 'content-length', ''];

  constructor(private readonly deps: FastLaneDeps) {
    this.record = deps.metrics.routeRecorder('GET', CLV_ROUTE);
  }

  /** Serves the request and returns true, or returns false having touched nothing: Fastify's then. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    if (req.method !== 'GET' || this.closing) return false;
    const url = matchClvUrl(req.url ?? '');
    if (url === undefined) return false;
    const start = performance.now();
    this.served++;
    const { authorized } = this.deps;
    if (authorized !== undefined && !authorized(req.headers.authorization)) {
      this.fail(res, start, unauthorized(), true);
      return true;
    }
    lookUpClv(this.deps.lookup, this.deps.clock, url.id, url.as_of).then(
      ({ found, asOf }) => this.ok(res, start, clvJson(found.record, asOf, this.deps.recency, found.source)),
    ).catch((err: unknown) => this.fail(res, start, err, false));
    return true;
  }

  private ok(res: ServerResponse, start: number, body: string): void {
    const h = this.okHeaders;
    h[3] = String(Buffer.byteLength(body));
    res.writeHead(200, h);
    res.end(body);
    this.record(200, (performance.now() - start) / 1000);
  }

  private fail(res: ServerResponse, start: number, err: unknown, challenge: boolean): void {
    // Only if the answer failed half-way (headers gone): nothing sensible is left to send.
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const a = this.deps.errors.answer(err, 'GET', CLV_ROUTE);
    const body = JSON.stringify(a.body);
    const length = String(Buffer.byteLength(body));
    // Fastify's order: the hook's www-authenticate first, then the type and length the reply adds.
    res.writeHead(a.status, challenge
      ? ['www-authenticate', 'Bearer', 'content-type', JSON_TYPE, 'content-length', length]
      : ['content-type', JSON_TYPE, 'content-length', length]);
    res.end(body);
    this.record(a.status, (performance.now() - start) / 1000);
  }
}
