-- mart_sales: per day and product category, the orders, units and revenue
-- of the lines that count (not cancelled or returned). Products without a
-- category form the day's NULL cell, as GROUP BY makes it.
-- filter('orders'): only these orders' lines, which is what they add to
-- each cell (orders are disjoint, so cells are sums over orders: the
-- per-key form adds after minus before). filter('cells'): whole cells.
SELECT
  f.date_key,
  p.category,
  count(DISTINCT f.order_id)::int AS orders,
  sum(f.quantity)::bigint AS units,
  sum(f.line_total) AS revenue
FROM {{ ref('fact_orders') }} f
JOIN {{ ref('dim_products') }} p ON p.product_id = f.product_id
WHERE f.status NOT IN ('cancelled', 'returned') AND f.date_key IS NOT NULL
  AND {{ filter('orders', 'f.order_id') }}
  AND {{ filter('cells') }}
GROUP BY f.date_key, p.category
