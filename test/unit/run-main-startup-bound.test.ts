import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const FIXTURE = fileURLToPath(new URL('../fixtures/startup-hang.ts', import.meta.url));

describe('runMain start-up bound', () => {
  it('exits 1 with STALLED when a start-up never settles, and only after the bound', () => {
    const t0 = Date.now();
    const r = spawnSync(process.execPath, ['--import', 'tsx', FIXTURE], { env: { ...process.env, BOUND_MS: '1500', LOG_LEVEL: 'silent' }, encoding: 'utf8', timeout: 60_000 });
    const took = Date.now() - t0;
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/startup-hang: start-up did not finish in 2 s \[STALLED\]/);
    expect(took).toBeGreaterThanOrEqual(1500);
  }, 70_000);
});
