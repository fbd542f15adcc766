-- Recency segments on whole days, as the API computes them
-- (src/api/recency.ts): days_since_last_order = floor of elapsed days, and
-- the thresholds compare that integer, so 30 days and 5 hours is still
-- "active". The first version of this view compared raw intervals, which
-- disagreed with the API during the day after each threshold.
CREATE OR REPLACE VIEW {{analytics_schema}}.customer_lifetime_value_now AS
  SELECT c.*, d.days_since_last_order,
         CASE WHEN d.days_since_last_order <= 30 THEN 'active'
              WHEN d.days_since_last_order <= 90 THEN 'cooling'
              WHEN d.days_since_last_order <= 180 THEN 'at_risk'
              ELSE 'churned' END AS recency_segment
  FROM {{analytics_schema}}.customer_lifetime_value c
  CROSS JOIN LATERAL (
    SELECT floor(extract(epoch FROM now() - c.last_order_date) / 86400)::int AS days_since_last_order
  ) d;

-- GET /customers/top?by=orders|items: ordered scans instead of a full sort.
CREATE INDEX IF NOT EXISTS clv_top_orders ON {{analytics_schema}}.customer_lifetime_value (total_orders DESC, customer_id);
CREATE INDEX IF NOT EXISTS clv_top_items ON {{analytics_schema}}.customer_lifetime_value (total_items DESC, customer_id);
