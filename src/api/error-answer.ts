import type { FastifyError } from 'fastify';
import type { Logger } from '../logger.ts';
import { ApiError } from './errors.ts';
import { LogThrottle } from './log-throttle.ts';

/** An error response: its status and the `{ error, code }` body (docs/api.md, Errors). */
export interface ErrorAnswer {
  status: number;
  body: { error: string; code: string };
}

/**
 * Turns whatever a request failed with into its answer, and logs the 5xx
 * ones (at most once per 10 s per code). Fastify's error handler and the
 * lookup fast lane (src/api/fast-lane.ts) both answer through one instance,
 * so an error reads the same, and is throttled together, whichever path
 * served the request.
 */
export class ErrorAnswers {
  private readonly throttle = new LogThrottle();

  /** `log`: the HTTP component's logger (the one Fastify's req.log is). */
  constructor(private readonly log: Logger) {}

  answer(err: unknown, method: string, route: string | undefined): ErrorAnswer {
    if (err instanceof ApiError) {
      if (err.status >= 500) {
        const suppressed = this.throttle.admit(err.code);
        if (suppressed !== undefined) this.log.error({ err: err.cause ?? err, method, route, suppressed }, err.message);
      }
      return { status: err.status, body: err.toBody() };
    }
    const status = (err as FastifyError | undefined)?.statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return { status, body: { error: (err as Error).message, code: 'BAD_REQUEST' } };
    }
    const suppressed = this.throttle.admit('INTERNAL');
    if (suppressed !== undefined) this.log.error({ err, method, route, suppressed }, 'request failed');
    return { status: 500, body: { error: 'internal error', code: 'INTERNAL' } };
  }
}
