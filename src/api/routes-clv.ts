import type { FastifyInstance } from 'fastify';
import type { ClvPostgres } from './clv-pg.ts';
import type { ClvLookup } from './clv-lookup.ts';
import { clvResponseSchema, toResponse } from './clv-record.ts';
import { ApiError } from './errors.ts';
import { NowClock } from './instant.ts';
import { parseCustomerId, parseTopQuery, readAsOf } from './params.ts';
import type { RecencyThresholds } from './recency.ts';

export interface ClvRouteDeps {
  lookup: ClvLookup;
  pg: ClvPostgres;
  recency: RecencyThresholds;
}

/** Postgres is the last resort of every read here, so its failure is a 503 the client may retry. */
export async function fromWarehouse<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    throw new ApiError(503, 'WAREHOUSE_UNAVAILABLE', 'the warehouse database is unavailable, retry later', { cause: err });
  }
}

export function registerClvRoutes(app: FastifyInstance, deps: ClvRouteDeps): void {
  const { lookup, pg, recency } = deps;
  const clock = new NowClock();

  app.get<{ Params: { id: string }; Querystring: Record<string, unknown> }>(
    '/customers/:id/clv',
    { schema: { response: { 200: clvResponseSchema } } },
    async (req) => {
      const id = parseCustomerId(req.params.id);
      const asOf = readAsOf(req.query.as_of, clock);
      const found = await fromWarehouse(lookup.find(id));
      if (!found) throw new ApiError(404, 'CUSTOMER_NOT_FOUND', `customer ${id} has no lifetime value (unknown, or no qualifying order)`);
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
