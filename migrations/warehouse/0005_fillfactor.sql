-- The consumer updates fact_orders and order_fulfillment rows in place when
-- an order's status moves (src/sinks/postgres/recompute.ts, upsertRowsSql).
-- Status is not indexed, so with free room on the page the update is HOT:
-- no index is touched. Applies to pages written from now on.
ALTER TABLE {{analytics_schema}}.fact_orders SET (fillfactor = 80);
ALTER TABLE {{analytics_schema}}.order_fulfillment SET (fillfactor = 80);
