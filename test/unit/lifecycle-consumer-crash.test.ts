import { createRequire } from 'node:module';
import pg from 'pg';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { consumerRetry } from '../../src/lifecycle/consumer-crash.ts';

const require = createRequire(import.meta.url);
const kerr = require('kafkajs/src/errors') as Record<string, new (...a: any[]) => Error>;
const log = pino({ level: 'silent' });

function pgError(code: string, message: string): Error {
  const e = new pg.DatabaseError(message, 0, 'error');
  e.code = code;
  e.severity = 'ERROR';
  return e;
}

describe('consumerRetry.restartOnFailure', () => {
  const exceeded = (cause: Error) => new kerr.KafkaJSNumberOfRetriesExceeded!(cause, { retryCount: 8, retryTime: 30_000 });

  it('restarts the consumer in place when the cause is retriable (Postgres restarting, connection refused)', async () => {
    const { restartOnFailure } = consumerRetry({ log, signal: new AbortController().signal });
    expect(await restartOnFailure!(exceeded(pgError('57P01', 'terminating connection due to administrator command')))).toBe(true);
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:55432'), { code: 'ECONNREFUSED' });
    expect(await restartOnFailure!(exceeded(refused))).toBe(true);
  });

  it('refuses for a fatal cause, so the crash reaches the process (exit 1) instead of looping', async () => {
    const { restartOnFailure } = consumerRetry({ log, signal: new AbortController().signal });
    expect(await restartOnFailure!(exceeded(pgError('42P01', 'relation "cdc_meta.consumer_offsets" does not exist')))).toBe(false);
    expect(await restartOnFailure!(exceeded(new TypeError('x is not a function')))).toBe(false);
  });

  it('never restarts a consumer that is being stopped', async () => {
    const ac = new AbortController();
    ac.abort();
    const { restartOnFailure } = consumerRetry({ log, signal: ac.signal });
    expect(await restartOnFailure!(exceeded(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })))).toBe(false);
  });
});
