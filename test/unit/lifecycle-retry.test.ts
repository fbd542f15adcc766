import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { Writable } from 'node:stream';
import { UnavailableError, ValidationError } from '../../src/errors.ts';
import { kafkaEndpoint } from '../../src/lifecycle/endpoints.ts';
import { backoffDelay, oneShotWaitMs, withRetry } from '../../src/lifecycle/retry.ts';

function captureLog() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({ write(chunk, _enc, cb) { lines.push(JSON.parse(String(chunk))); cb(); } });
  return { log: pino({ level: 'debug' }, stream), lines };
}

const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:59092'), { code: 'ECONNREFUSED', address: '127.0.0.1', port: 59092 });

describe('backoffDelay', () => {
  it('doubles from the base up to the cap, with half of each delay random', () => {
    expect([0, 1, 2, 3].map((a) => backoffDelay(a, 100, 10_000, () => 0))).toEqual([50, 100, 200, 400]);
    expect([0, 1, 2, 3].map((a) => backoffDelay(a, 100, 10_000, () => 1))).toEqual([100, 200, 400, 800]);
    expect(backoffDelay(20, 100, 10_000, () => 0)).toBe(5_000);
    expect(backoffDelay(1000, 100, 10_000, () => 1)).toBe(10_000);
    for (let a = 0; a < 50; a++) {
      const d = backoffDelay(a, 200, 10_000);
      expect(d).toBeGreaterThanOrEqual(Math.min(10_000, 200 * 2 ** a) / 2);
      expect(d).toBeLessThanOrEqual(10_000);
    }
  });
});

describe('withRetry', () => {
  it('retries a retriable error until the call succeeds, logging a throttled waiting line naming the server', async () => {
    const { log, lines } = captureLog();
    let calls = 0;
    const out = await withRetry(async () => {
      if (++calls < 4) throw refused();
      return 'ok';
    }, { what: 'start-up', log, endpoints: [kafkaEndpoint(['127.0.0.1:59092'])], baseMs: 5, capMs: 10, logEveryMs: 60_000 });
    expect(out).toBe('ok');
    expect(calls).toBe(4);
    const waiting = lines.filter((l) => /^waiting for/.test(String(l.msg)));
    expect(waiting).toHaveLength(1); // throttled: three failures inside one minute, one line
    expect(waiting[0]!.msg).toBe('waiting for Kafka at 127.0.0.1:59092 (0 s)…');
    expect(waiting[0]!.setting).toBe('KAFKA_BROKERS');
    expect(String(waiting[0]!.hint)).toContain('npm run stack:up');
    expect(lines.some((l) => /going on after/.test(String(l.msg)))).toBe(true);
  });

  it('throws a fatal error at once, as the named error', async () => {
    const { log } = captureLog();
    let calls = 0;
    await expect(withRetry(async () => { calls++; throw new ValidationError('bad'); }, { what: 'x', log, baseMs: 1 })).rejects.toBeInstanceOf(ValidationError);
    expect(calls).toBe(1);
  });

  it('gives up after maxWaitMs with STARTUP_TIMEOUT naming the server and setting', async () => {
    const { log } = captureLog();
    const err = await withRetry(async () => { throw refused(); }, { what: 'migrations', log, endpoints: [kafkaEndpoint(['127.0.0.1:59092'])], baseMs: 10, capMs: 20, maxWaitMs: 80 }).catch((e) => e);
    expect(err.code).toBe('STARTUP_TIMEOUT');
    expect(err.retriable).toBe(false);
    expect(err.message).toMatch(/^Kafka at 127\.0\.0\.1:59092 \(KAFKA_BROKERS\) did not answer in \d+ s \(connect ECONNREFUSED 127\.0\.0\.1:59092; start the local stack with `npm run stack:up`\)$/);
  });

  it('stops waiting when the signal aborts', async () => {
    const { log } = captureLog();
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 30);
    const t0 = Date.now();
    const err = await withRetry(async () => { throw new UnavailableError('KAFKA_UNAVAILABLE', 'down'); }, { what: 'x', log, signal: ac.signal, baseMs: 10_000, capMs: 10_000 }).catch((e) => e);
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(err.code).toBe('KAFKA_UNAVAILABLE');
  });

  it('reads STARTUP_WAIT_MS for one-shot commands', () => {
    expect(oneShotWaitMs({})).toBe(15_000);
    expect(oneShotWaitMs({ STARTUP_WAIT_MS: '0' })).toBe(0);
    expect(() => oneShotWaitMs({ STARTUP_WAIT_MS: 'soon' })).toThrow(/^STARTUP_WAIT_MS /);
  });
});
