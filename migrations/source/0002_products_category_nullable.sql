-- A product may have no category (docs/contract.md, "Source"): real
-- catalogues carry uncategorised products, and the demo generator writes
-- some so the NULL group of mart_sales is exercised.
ALTER TABLE {{source_schema}}.products ALTER COLUMN category DROP NOT NULL;
