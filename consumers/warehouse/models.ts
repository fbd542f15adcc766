import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The derived tables' definitions, one readable SELECT per table in
 * models/<table>.sql (a small dbt-like template language), rendered into
 * the three forms that must agree: the per-key recomputation (filters on
 * the affected keys), the full refresh (no filter, over the tables just
 * rebuilt) and verify (no filter, each ref() the recomputation of the
 * model it names, so the expected rows come from staging alone).
 *
 * Template: {{ source('stg_x') }} a staging table; {{ ref('model') }} the
 * relation a form gives for another model; {{ var('name') }} a checked
 * value; {{ filter('name', 'column') }} `column = ANY(<array>)` when the
 * form passes the array for `name`, else `true`; {{ filter('name') }} a
 * predicate the form passes, else `true`; {% if filtered %} A {% else %}
 * B {% endif %} picks a join shape for the per-key form (any filter or
 * block given); {% block name %} X {% endblock %} names a part of the
 * model: rendered in place unless the form passes a relation for it
 * (`blocks`), and renderable alone (renderBlock), so a form that computes
 * the part another way (the CLV delta, recompute-clv.ts) still takes the
 * rest of the definition from the model.
 */
export const MODEL_NAMES = ['dim_products', 'dim_customers', 'fact_orders', 'customer_lifetime_value', 'mart_sales', 'order_fulfillment'] as const;
export type ModelName = typeof MODEL_NAMES[number];

const DIR = join(dirname(fileURLToPath(import.meta.url)), 'models');
const cache = new Map<ModelName, string>();

export function modelSource(name: ModelName): string {
  let s = cache.get(name);
  if (s === undefined) {
    s = readFileSync(join(DIR, `${name}.sql`), 'utf8');
    cache.set(name, s);
  }
  return s;
}

export interface RenderContext {
  /** Quoted staging schema. */
  stg: string;
  /** The relation (table or parenthesised SELECT) each ref() names. */
  refs?: Partial<Record<ModelName, string>>;
  /** Per filter name: an SQL array expression (column form) or a predicate (bare form). */
  filters?: Record<string, string>;
  vars?: Record<string, string | number>;
  /** Per block name: the SQL rendered instead of the block's own body. */
  blocks?: Record<string, string>;
}

export class ModelTemplateError extends Error {
  override name = 'ModelTemplateError';
}

const NAMED_BLOCK = /\{%\s*block\s+([a-z_][a-z0-9_]*)\s*%\}([\s\S]*?)\{%\s*endblock\s*%\}/g;
const IF_BLOCK = /\{%\s*if\s+filtered\s*%\}([\s\S]*?)(?:\{%\s*else\s*%\}([\s\S]*?))?\{%\s*endif\s*%\}/g;
const TAG = /\{\{\s*(source|ref|var|filter)\(\s*'([a-z_][a-z0-9_]*)'\s*(?:,\s*'([a-z_][a-z0-9_.]*)'\s*)?\)\s*\}\}/g;

export function renderModel(name: ModelName, ctx: RenderContext): string {
  const blocks = ctx.blocks ?? {};
  for (const b of Object.keys(blocks)) if (blockBody(name, b) === undefined) throw new ModelTemplateError(`model ${name}: no block '${b}'`);
  const source = modelSource(name).replace(NAMED_BLOCK, (_, b: string, body: string) => blocks[b] ?? body);
  return renderSource(name, source, ctx, Object.keys(ctx.filters ?? {}).length > 0 || Object.keys(blocks).length > 0);
}

/** One named block of a model, rendered alone (an unfiltered form unless `ctx.filters` names some). */
export function renderBlock(name: ModelName, block: string, ctx: RenderContext): string {
  const body = blockBody(name, block);
  if (body === undefined) throw new ModelTemplateError(`model ${name}: no block '${block}'`);
  return renderSource(name, body, ctx, Object.keys(ctx.filters ?? {}).length > 0);
}

function blockBody(name: ModelName, block: string): string | undefined {
  for (const m of modelSource(name).matchAll(NAMED_BLOCK)) if (m[1] === block) return m[2];
  return undefined;
}

function renderSource(name: ModelName, source: string, ctx: RenderContext, filtered: boolean): string {
  const filters = ctx.filters ?? {};
  const sql = source
    .replace(IF_BLOCK, (_, yes: string, no: string | undefined) => (filtered ? yes : (no ?? '')))
    .replace(TAG, (_, fn: string, arg: string, col: string | undefined) => {
      switch (fn) {
        case 'source':
          return `${ctx.stg}.${arg}`;
        case 'ref': {
          const r = ctx.refs?.[arg as ModelName];
          if (!r) throw new ModelTemplateError(`model ${name}: no relation given for ref('${arg}')`);
          return r;
        }
        case 'var': {
          const v = ctx.vars?.[arg];
          if (v === undefined) throw new ModelTemplateError(`model ${name}: no value given for var('${arg}')`);
          return String(v);
        }
        default: {
          const f = filters[arg];
          if (f === undefined) return 'true';
          return col ? `${col} = ANY(${f})` : `(${f})`;
        }
      }
    });
  if (/\{\{|\{%/.test(sql)) throw new ModelTemplateError(`model ${name}: unrendered template tag`);
  return sql;
}
