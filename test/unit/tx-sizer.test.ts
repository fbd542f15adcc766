import type { KafkaMessage } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { sliceMessages, TxSizer } from '../../src/consumer/tx-sizer.ts';

const msg = (offset: number, bytes = 100): KafkaMessage => ({ offset: String(offset), key: null, value: Buffer.alloc(bytes), timestamp: '0', attributes: 0, headers: {} } as KafkaMessage);

describe('TxSizer', () => {
  const o = { maxMessages: 20_000, maxBytes: 16 << 20, liveBudgetMs: 250, backlogBudgetMs: 2000, minMessages: 200, backlogMinMessages: 2000, initialMsPerMessage: 0.25 };

  it('sizes transactions by the time budget: small when live, large with a backlog waiting', () => {
    const s = new TxSizer(o);
    expect(s.limits(false).maxMessages).toBe(1000);
    expect(s.limits(true).maxMessages).toBe(8000);
  });

  it('follows the measured cost per message, within the floors', () => {
    const s = new TxSizer(o);
    for (let i = 0; i < 30; i++) s.observe(1000, 500); // 0.5 ms a message
    expect(s.measuredMsPerMessage).toBeCloseTo(0.5, 2);
    expect(s.limits(true).maxMessages).toBe(4000);
    expect(s.limits(false).maxMessages).toBe(500);
    for (let i = 0; i < 30; i++) s.observe(100, 1000); // a busy machine: 10 ms a message
    expect(s.limits(false).maxMessages).toBe(200);
    expect(s.limits(true).maxMessages).toBe(2000); // a backlog never drains in smaller transactions
  });

  it('never exceeds the configured cap, and a cap below the floor wins', () => {
    const fast = new TxSizer({ ...o, initialMsPerMessage: 0.001 });
    expect(fast.limits(true).maxMessages).toBe(20_000);
    expect(new TxSizer({ ...o, maxMessages: 15 }).limits(false).maxMessages).toBe(15);
  });

  it('ignores a measurement of nothing', () => {
    const s = new TxSizer(o);
    s.observe(0, 50);
    s.observe(10, Number.NaN);
    expect(s.measuredMsPerMessage).toBe(0.25);
  });
});

describe('sliceMessages', () => {
  it('cuts consecutive slices by count and by bytes, keeping every message once and in order', () => {
    const ms = Array.from({ length: 25 }, (_, i) => msg(i, i === 12 ? 5000 : 100));
    const slices = sliceMessages(ms, { maxMessages: 10, maxBytes: 1000 });
    expect(slices.flat().map((m) => m.offset)).toEqual(ms.map((m) => m.offset));
    for (const sl of slices) expect(sl.length).toBeLessThanOrEqual(10);
    // the oversized message is alone in its slice
    expect(slices.find((sl) => sl.some((m) => m.offset === '12'))).toHaveLength(1);
    expect(sliceMessages([], { maxMessages: 10, maxBytes: 1000 })).toEqual([]);
  });
});
