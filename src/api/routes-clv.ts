import type { FastifyInstance } from 'fastify';
import type { ClvPostgres } from './clv-pg.ts';
import type { ClvLookup, Found } from './clv-lookup.ts';
import { clvResponseSchema, toResponse } from './clv-record.ts';
import { ApiError, customerNotFound } from './errors.ts';
import type { CanonicalInstant, NowClock } from './instant.ts';
import { parseCustomerId, parseTopQuery, readAsOf } from './params.ts';
import type { RecencyThresholds } from './recency.ts';

export interface ClvRouteDeps {
  lookup: ClvLookup;
  pg: ClvPostgres;
  recency: RecencyThresholds;
  /** The as-of of "now"; shared with the fast lane. */
  clock: NowClock;
}

/** Postgres is the last resort of every read here, so its failure is a 503 the client may retry. */
export async function fromWarehouse<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    throw new ApiError(503, 'WAREHOUSE_UNAVAILABLE', 'the warehouse database is unavailable, retry later', { cause: err });
  }
}

/**
 * GET /customers/:id/clv up to its answer, shared by the Fastify route and
 * the fast lane (src/api/fast-lane.ts), so the two validate, look up and
 * refuse alike: the id first, then as_of, then Redis or Postgres. Throws
 * ApiError.
 */
export async function lookUpClv(lookup: ClvLookup, clock: NowClock, rawId: string, rawAsOf: unknown): Promise<{ found: Found; asOf: CanonicalInstant }> {
  const id = parseCustomerId(rawId);
  const asOf = readAsOf(rawAsOf, clock);
  const found = await fromWarehouse(lookup.find(id));
  if (!found) throw customerNotFound(id);
  return { found, asOf };
}

export function registerClvRoutes(app: FastifyInstance, deps: ClvRouteDeps): void {
  const { lookup, pg, recency, clock } = deps;

  app.get<{ Params: { id: string }; Querystring: Record<string, unknown> }>(
    '/customers/:id/clv',
    { schema: { response: { 200: clvResponseSchema } } },
    async (req) => {
      const { found, asOf } = await lookUpClv(lookup, clock, req.params.id, req.query.as_of);
      return toResponse(found.record, asOf, recency, found.source);
    },
  );

  app.get<{ Querystring: Record<string, unknown> }>(
    '/customers/top',
    {
      schema: {
        response: {
          200: {
            type: 'object',
            required: ['by', 'limit', 'customers'],
            properties: {
              by: { type: 'string' },
              limit: { type: 'integer' },
              customers: { type: 'array', items: clvResponseSchema },
            },
          },
        },
      },
    },
    async (req) => {
      const { by, limit } = parseTopQuery(req.query);
      const asOf = readAsOf(req.query.as_of, clock);
      const rows = await fromWarehouse(pg.top(by, limit));
      return { by, limit, customers: rows.map((r) => toResponse(r, asOf, recency, 'postgres')) };
    },
  );
}
