-- mart_sales counts the lines of products without a category in one group
-- whose category is NULL, as SQL's GROUP BY does (docs/contract.md,
-- "mart_sales"): no qualifying revenue is left out. A primary key cannot
-- hold a NULL, so the cell key becomes a unique index that treats NULLs as
-- equal (Postgres 15+): one NULL cell per day, and ON CONFLICT (date_key,
-- category) still finds it.
ALTER TABLE {{analytics_schema}}.mart_sales DROP CONSTRAINT mart_sales_pkey;
ALTER TABLE {{analytics_schema}}.mart_sales ALTER COLUMN category DROP NOT NULL;
ALTER TABLE {{analytics_schema}}.mart_sales
  ADD CONSTRAINT mart_sales_cell_key UNIQUE NULLS NOT DISTINCT (date_key, category);
