import { describe, expect, it } from 'vitest';
import { loadCaptureConfig } from '../../src/source/capture-config.ts';

describe('CAPTURE_SKIPPED_OPERATIONS', () => {
  it('defaults to none and reads Debezium-style op lists, naming a bad value', () => {
    expect([...loadCaptureConfig({}).skippedOperations]).toEqual([]);
    expect([...loadCaptureConfig({ CAPTURE_SKIPPED_OPERATIONS: 'none' }).skippedOperations]).toEqual([]);
    expect([...loadCaptureConfig({ CAPTURE_SKIPPED_OPERATIONS: 't' }).skippedOperations]).toEqual(['t']);
    expect([...loadCaptureConfig({ CAPTURE_SKIPPED_OPERATIONS: 'u, t' }).skippedOperations].sort()).toEqual(['t', 'u']);
    expect(() => loadCaptureConfig({ CAPTURE_SKIPPED_OPERATIONS: 'r' })).toThrow(/^CAPTURE_SKIPPED_OPERATIONS /);
    expect(() => loadCaptureConfig({ CAPTURE_SKIPPED_OPERATIONS: 'none,t' })).toThrow(/^CAPTURE_SKIPPED_OPERATIONS /);
  });
});
