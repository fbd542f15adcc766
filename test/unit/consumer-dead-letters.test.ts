import { describe, expect, it } from 'vitest';
import { estimateRecordBytes, planChunks } from '../../src/consumer/dead-letters.ts';

describe('planChunks', () => {
  it('splits a run larger than the limit into ordered chunks each under it', () => {
    const sizes = Array.from({ length: 300 }, () => 4200);
    const limit = 1_048_588;
    const { chunks, oversized } = planChunks(sizes, limit);
    expect(oversized).toEqual([]);
    expect(chunks.length).toBe(2);
    expect(chunks.flat()).toEqual(sizes.map((_, i) => i));
    for (const c of chunks) expect(c.reduce((n, i) => n + sizes[i]!, 0)).toBeLessThan(limit);
  });

  it('sets apart a record that cannot fit alone and keeps the others in order', () => {
    const { chunks, oversized } = planChunks([100, 2_000_000, 100, 100], 1_048_588);
    expect(oversized).toEqual([1]);
    expect(chunks).toEqual([[0, 2, 3]]);
  });

  it('counts key, value and headers in a record estimate', () => {
    const bare = estimateRecordBytes({ key: null, value: Buffer.alloc(1000) });
    const withHeaders = estimateRecordBytes({ key: Buffer.alloc(10), value: Buffer.alloc(1000), headers: { 'dlq.error': 'x'.repeat(2000), a: [Buffer.alloc(5), 'bc'] } });
    expect(bare).toBeGreaterThan(1000);
    expect(withHeaders - bare).toBeGreaterThanOrEqual(10 + 2000 + 'dlq.error'.length + 1 + 7);
  });
});
