-- Commit order decides which version of a row wins (docs/consumers.md,
-- "Order of changes"). A change's own LSN is not commit order: a transaction
-- that started early and committed late has lower LSNs than changes committed
-- before it. The ordering key is (seq, lsn), seq being `source.sequence[0]`,
-- the last LSN committed before the change's transaction, which only grows in
-- commit order.
--
-- Rows written before this migration took their LSN as their rank: every
-- later transaction's seq is at least the end of the transaction that wrote
-- them, so new changes still win over them.
ALTER TABLE {{staging_schema}}.stg_customers   ADD COLUMN _source_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE {{staging_schema}}.stg_products    ADD COLUMN _source_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE {{staging_schema}}.stg_orders      ADD COLUMN _source_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE {{staging_schema}}.stg_order_items ADD COLUMN _source_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE {{staging_schema}}.stg_tombstones  ADD COLUMN _source_seq bigint NOT NULL DEFAULT 0;
UPDATE {{staging_schema}}.stg_customers   SET _source_seq = _source_lsn;
UPDATE {{staging_schema}}.stg_products    SET _source_seq = _source_lsn;
UPDATE {{staging_schema}}.stg_orders      SET _source_seq = _source_lsn;
UPDATE {{staging_schema}}.stg_order_items SET _source_seq = _source_lsn;
UPDATE {{staging_schema}}.stg_tombstones  SET _source_seq = _source_lsn;

-- History in commit order too: the SCD2 walk (src/transforms/scd2.ts) and its
-- SQL twin order a customer's changes by (seq, lsn).
ALTER TABLE {{staging_schema}}.customer_changes     ADD COLUMN seq bigint NOT NULL DEFAULT 0;
ALTER TABLE {{staging_schema}}.order_status_changes ADD COLUMN seq bigint NOT NULL DEFAULT 0;
UPDATE {{staging_schema}}.customer_changes     SET seq = lsn;
UPDATE {{staging_schema}}.order_status_changes SET seq = lsn;
