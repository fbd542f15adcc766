import type pg from 'pg';
import type { Logger } from '../logger.ts';
import { applyPrimaryKey, describeTable } from '../source/catalog.ts';
import type { Relation } from '../source/change-event.ts';
import type { RegistryClient } from './registry-client.ts';
import { buildRelationSchemas, type RelationSchemas } from './relation-schema.ts';

export interface PreparedRelation {
  schemas: RelationSchemas;
  keyId: number;
  valueId: number;
  /** Confluent wire-format headers (magic byte + schema id), prebuilt. */
  keyHeader: Buffer;
  valueHeader: Buffer;
  /** Key of truncate records on compacted topics (which refuse keyless records); null: truncates are keyless. */
  truncateKey?: Buffer | null;
}

/**
 * Key schema of truncate records on compacted topics, registered under
 * `<topic>-truncate-key` (the table's key subject keeps only its key record).
 * All truncates of a topic share one key, so compaction keeps the latest one:
 * that is enough, a truncate removes every row written before it.
 */
export const TRUNCATE_KEY_SCHEMA = {
  type: 'record', name: 'TruncateKey', namespace: 'io.shopstream.capture',
  fields: [{ name: 'truncate', type: 'boolean' }],
};

function wireHeader(id: number): Buffer {
  const b = Buffer.alloc(5);
  b.writeInt32BE(id, 1);
  return b;
}

/** Optional fields of the latest registered Value record, or null when the subject is new. */
function previousFields(envelope: any): Map<string, boolean> | null {
  const before = envelope?.fields?.find((f: any) => f.name === 'before');
  const value = Array.isArray(before?.type) ? before.type.find((t: any) => typeof t === 'object') : null;
  if (!value?.fields) return null;
  return new Map(value.fields.map((f: any) => [f.name as string, Array.isArray(f.type) && f.type[0] === 'null']));
}

/**
 * Turns each table shape into registered key/value schemas. Called when a
 * Relation message reports a new shape (first sight, or after DDL) and before
 * snapshot reads. The topic must exist before the first message: auto-create
 * is off on our brokers.
 */
export class SchemaManager {
  private readonly byRelation = new WeakMap<Relation, PreparedRelation>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly registry: RegistryClient,
    private readonly prefix: string,
    private readonly ensureTopic: (topic: string) => Promise<void>,
    private readonly log: Logger,
    private readonly keyedTruncates = false,
  ) {}

  get(relation: Relation): PreparedRelation | undefined {
    return this.byRelation.get(relation);
  }

  async prepare(relation: Relation): Promise<PreparedRelation> {
    const desc = await describeTable(this.pool, relation.schema, relation.table);
    applyPrimaryKey(relation, desc);
    const notNull = new Map(desc?.columns.map((c) => [c.name, c.notNull]) ?? []);
    const topic = `${this.prefix}.${relation.schema}.${relation.table}`;
    const prev = previousFields(await this.registry.latest(`${topic}-value`));
    // A column is optional if it is nullable, unknown to the catalog (dropped
    // since), new since the subject's last version, or optional there: so
    // every new version can read data written with the previous one.
    const optional = (name: string) => notNull.get(name) !== true || (prev !== null && (!prev.has(name) || prev.get(name) === true));
    const schemas = buildRelationSchemas(relation, this.prefix, optional);
    await this.ensureTopic(topic);
    const keyId = await this.registry.register(`${topic}-key`, schemas.keySchema);
    const valueId = await this.registry.register(`${topic}-value`, schemas.valueSchema);
    const truncateKey = this.keyedTruncates
      ? Buffer.concat([wireHeader(await this.registry.register(`${topic}-truncate-key`, TRUNCATE_KEY_SCHEMA)), Buffer.from([1])])
      : null;
    const prepared = { schemas, keyId, valueId, keyHeader: wireHeader(keyId), valueHeader: wireHeader(valueId), truncateKey };
    this.byRelation.set(relation, prepared);
    this.log.info({ topic, keyId, valueId, columns: relation.columns.length }, 'table schema ready');
    return prepared;
  }
}
