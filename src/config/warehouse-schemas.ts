import { ConfigError } from '../errors.ts';
import type { WarehouseSchemas } from '../sinks/postgres/pool.ts';
import { str, type Env } from './env.ts';

const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

function ident(env: Env, name: string, fallback: string): string {
  const v = str(env, name, fallback);
  if (!IDENT.test(v)) throw new ConfigError(`${name} must be a lowercase identifier ([a-z_][a-z0-9_]*), got "${v}"`);
  return v;
}

/**
 * The warehouse namespace (STAGING_SCHEMA, ANALYTICS_SCHEMA, META_SCHEMA),
 * read the same way by every consumer process, so the processes of one
 * deployment point at the same warehouse.
 */
export function loadWarehouseSchemas(env: Env): WarehouseSchemas {
  return {
    staging: ident(env, 'STAGING_SCHEMA', 'staging'),
    analytics: ident(env, 'ANALYTICS_SCHEMA', 'analytics'),
    meta: ident(env, 'META_SCHEMA', 'cdc_meta'),
  };
}
