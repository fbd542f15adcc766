import pg from 'pg';
import { factOrdersSelectSql } from '../../consumers/warehouse/derived-sql.ts';

/** npx tsx bench/consumers/explain-fact.ts <bench id>: plan of the batch fact_orders SELECT over a bench run's tables (the rebuild diagnosis). */
const id = process.argv[2]!;
const c = new pg.Client({ connectionString: process.env.WAREHOUSE_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:55432/warehouse' });
await c.connect();
const r = await c.query(`EXPLAIN ${factOrdersSelectSql(`"${id}_stg"`, `"${id}_an".dim_customers`)}`);
console.log(r.rows.map((x) => x['QUERY PLAN']).join('\n'));
const i = await c.query(`SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'dim_customers'`, [`${id}_an`]);
console.log(i.rows.map((x) => x.indexdef).join('\n'));
await c.end();
