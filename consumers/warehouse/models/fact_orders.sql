-- fact_orders: one row per order line. customer_key is the customer's
-- version at the order date: the latest version starting at or before it
-- (in a gap after a delete, the last version before it); an order older
-- than the first version gets the first version. The lookup is one join
-- of the orders with their customers' versions, the first of them in that
-- order per order (DISTINCT ON): the same cost against the indexed table
-- and against verify's recomputation of dim_customers, which has no index.
-- filter('orders'): which orders (the per-key form); all when absent.
WITH o AS MATERIALIZED (
  SELECT o.order_id, o.customer_id, o.order_date, o.status,
         to_char(o.order_date AT TIME ZONE 'UTC', 'YYYYMMDD')::int AS date_key
  FROM {{ source('stg_orders') }} o
  WHERE {{ filter('orders', 'o.order_id') }}
),
ck AS (
  SELECT DISTINCT ON (o.order_id) o.order_id, d.customer_key
  FROM o JOIN {{ ref('dim_customers') }} d ON d.customer_id = o.customer_id
  ORDER BY o.order_id,
           (d.effective_date <= o.order_date) DESC,
           CASE WHEN d.effective_date <= o.order_date THEN d.effective_date END DESC NULLS LAST,
           d.effective_date ASC, d.expiration_date DESC
)
SELECT
  md5(i.order_id::text || '-' || i.product_id::text) AS order_item_key,
  i.order_id,
  i.product_id,
  o.customer_id,
  ck.customer_key,
  md5(i.product_id::text) AS product_key,
  o.date_key,
  o.order_date,
  o.status,
  i.quantity,
  i.unit_price,
  i.discount,
  round(i.quantity * i.unit_price * (1 - i.discount), 2) AS line_total,  -- half away from zero
  sum(round(i.quantity * i.unit_price * (1 - i.discount), 2)) OVER (PARTITION BY i.order_id) AS order_total
FROM o
LEFT JOIN ck ON ck.order_id = o.order_id
JOIN {{ source('stg_order_items') }} i ON i.order_id = o.order_id
