import { describe, expect, it } from 'vitest';
import { MODEL_NAMES, modelSource, renderBlock, renderModel } from '../../consumers/warehouse/models.ts';
import { clvSelectSql, DEFAULT_CLV_THRESHOLDS, factOrdersSelectSql, martSalesSelectSql } from '../../consumers/warehouse/derived-sql.ts';

const refs = { dim_customers: '"an".dim_customers', dim_products: '"an".dim_products', fact_orders: '"an".fact_orders' };
const vars = { value_high: '1000', value_medium: '250', frequency_loyal: 5, frequency_repeat: 2 };

describe('warehouse models', () => {
  it('every model renders unfiltered (full refresh, verify) with no template tag left', () => {
    for (const name of MODEL_NAMES) {
      const sql = renderModel(name, { stg: '"stg"', refs, vars });
      expect(sql, name).not.toMatch(/\{\{|\{%|%\}|\}\}/);
      expect(sql, name).not.toMatch(/= ANY\(/);
    }
  });

  it('the per-key form is the same SELECT restricted to the keys, where each model names them', () => {
    const all = factOrdersSelectSql('"stg"', refs.dim_customers);
    const keyed = factOrdersSelectSql('"stg"', refs.dim_customers, '$1::bigint[]');
    expect(keyed).toContain('o.order_id = ANY($1::bigint[])');
    expect(keyed.replace('o.order_id = ANY($1::bigint[])', 'true')).toBe(all);
    const fulfillment = renderModel('order_fulfillment', { stg: '"stg"', filters: { orders: '$1::bigint[]' } });
    expect(fulfillment.match(/= ANY\(\$1::bigint\[\]\)/g)).toHaveLength(2);
  });

  it('picks the per-key join shape only when filtered, and a bare filter is a predicate', () => {
    expect(clvSelectSql(refs.fact_orders, refs.dim_customers, DEFAULT_CLV_THRESHOLDS, '$1::bigint[]')).toContain('LEFT JOIN LATERAL');
    expect(clvSelectSql(refs.fact_orders, refs.dim_customers, DEFAULT_CLV_THRESHOLDS)).not.toContain('LATERAL');
    expect(martSalesSelectSql(refs.fact_orders, refs.dim_products, { cells: 'f.date_key = 1' })).toContain('AND (f.date_key = 1)');
  });

  it('a named block renders in place, alone, or replaced by the relation a form passes', () => {
    const full = clvSelectSql(refs.fact_orders, refs.dim_customers, DEFAULT_CLV_THRESHOLDS);
    const totals = renderBlock('customer_lifetime_value', 'totals', { stg: '', refs });
    expect(full).toContain(totals);
    expect(totals).toContain('GROUP BY f.customer_id');
    const byOrders = renderBlock('customer_lifetime_value', 'totals', { stg: '', refs, filters: { orders: '$9::bigint[]' } });
    expect(byOrders.replace('f.order_id = ANY($9::bigint[])', 'true')).toBe(totals);
    const delta = renderModel('customer_lifetime_value', { stg: '', refs, vars, blocks: { totals: 'SELECT * FROM totals' } });
    expect(delta).toContain('FROM (\nSELECT * FROM totals\n) a');
    expect(delta).not.toContain('count(DISTINCT');
    // The rest of the definition is the per-key form's: a replaced block counts as filtered.
    const perKey = clvSelectSql(refs.fact_orders, refs.dim_customers, DEFAULT_CLV_THRESHOLDS, '$1::bigint[]');
    expect(delta.replace('SELECT * FROM totals', totals)).toBe(perKey.replace('f.customer_id = ANY($1::bigint[])', 'true'));
    expect(delta).toContain('LEFT JOIN LATERAL');
    expect(() => renderModel('mart_sales', { stg: '', refs, blocks: { totals: 'x' } })).toThrow(/no block 'totals'/);
    expect(() => renderBlock('mart_sales', 'totals', { stg: '', refs })).toThrow(/no block 'totals'/);
  });

  it('refuses a missing ref or var, and bad thresholds', () => {
    expect(() => renderModel('fact_orders', { stg: '"stg"' })).toThrow(/ref\('dim_customers'\)/);
    expect(() => renderModel('customer_lifetime_value', { stg: '"stg"', refs })).toThrow(/var\('value_high'\)/);
    expect(() => clvSelectSql('f', 'd', { ...DEFAULT_CLV_THRESHOLDS, valueHigh: '1; DROP TABLE x' })).toThrow(/decimals/);
  });

  it('model files read as SQL: a comment header saying what the table is', () => {
    for (const name of MODEL_NAMES) expect(modelSource(name).startsWith(`-- ${name}:`), name).toBe(true);
  });
});
