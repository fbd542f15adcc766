import { randomBytes } from 'node:crypto';
import { DEFAULT_PORTS, loadStackConfig, type StackConfig } from '../../src/config/index.ts';
import { url, type Env } from '../../src/config/env.ts';

/**
 * Where the integration tests find the local stack (`npm run stack:up`):
 * the same settings every process reads, plus the registry's own database.
 * Env overrides as in docs/CONVENTIONS.md.
 */
export interface TestStack extends StackConfig {
  /** Storage of our schema registry (database `registry`). */
  registryDatabaseUrl: string;
}

export function loadTestStack(env: Env = process.env): TestStack {
  return {
    ...loadStackConfig(env),
    registryDatabaseUrl: url(
      env,
      'REGISTRY_DATABASE_URL',
      `postgres://postgres@127.0.0.1:${DEFAULT_PORTS.postgres}/registry`,
      ['postgres:', 'postgresql:'],
    ),
  };
}

export const stackEnv: TestStack = loadTestStack();

const MAX_PREFIX = 40;

/**
 * A short id that is unique across test files and runs, usable unquoted as a
 * Postgres schema name (lowercase, starts with a letter, [a-z0-9_], well
 * under 63 bytes), as a Kafka topic prefix and as a Redis key prefix:
 * `uniqueId('Sink CLV')` -> `sink_clv_3f9a0c1b7e`.
 */
export function uniqueId(prefix = 't'): string {
  let p = prefix.toLowerCase().replace(/[^a-z0-9_]+/g, '_').replace(/^_+|_+$/g, '');
  if (!/^[a-z]/.test(p)) p = `t${p}`;
  p = p.slice(0, MAX_PREFIX).replace(/_+$/, '');
  return `${p}_${randomBytes(5).toString('hex')}`;
}
