-- customer_lifetime_value: per customer, over their fact lines that count
-- (not cancelled or returned), joined to the customer's current version;
-- value and frequency segments by the configured thresholds
-- (docs/contract.md §3). `version` is not here: the writer assigns it.
-- filter('customers'): which customers (the per-key form); all when absent.
-- block totals: the per-customer sums; over any set of lines (filter
-- 'orders'), what those lines add, which the delta form adds and subtracts
-- (recompute-clv.ts) before the rest of this definition runs over the result.
SELECT
  a.customer_id,
  d.customer_key,
  d.customer_segment,
  a.total_orders,
  a.total_items,
  a.total_revenue,
  round(a.total_revenue / a.total_orders, 2) AS avg_order_value,
  a.first_order_date,
  a.last_order_date,
  floor(extract(epoch FROM a.last_order_date - a.first_order_date) / 86400)::int AS customer_lifetime_days,
  CASE WHEN a.total_revenue >= {{ var('value_high') }} THEN 'high'
       WHEN a.total_revenue >= {{ var('value_medium') }} THEN 'medium'
       ELSE 'low' END AS value_segment,
  CASE WHEN a.total_orders >= {{ var('frequency_loyal') }} THEN 'loyal'
       WHEN a.total_orders >= {{ var('frequency_repeat') }} THEN 'repeat'
       ELSE 'one_time' END AS frequency_segment
FROM (
{% block totals %}
  SELECT f.customer_id,
         count(DISTINCT f.order_id)::int AS total_orders,
         sum(f.quantity)::bigint AS total_items,
         sum(f.line_total) AS total_revenue,
         min(f.order_date) AS first_order_date,
         max(f.order_date) AS last_order_date
  FROM {{ ref('fact_orders') }} f
  WHERE f.status NOT IN ('cancelled', 'returned') AND f.customer_id IS NOT NULL
    AND {{ filter('customers', 'f.customer_id') }}
    AND {{ filter('orders', 'f.order_id') }}
  GROUP BY f.customer_id
{% endblock %}
) a
{% if filtered %}
-- A few customers: a probe per customer. The planner overestimates `= ANY`
-- groups and would hash all of dim_customers per batch (OFFSET 0 keeps it
-- from flattening the LATERAL back into that join).
LEFT JOIN LATERAL (
  SELECT d.customer_key, d.customer_segment FROM {{ ref('dim_customers') }} d
  WHERE d.customer_id = a.customer_id AND d.is_current OFFSET 0
) d ON true
{% else %}
LEFT JOIN {{ ref('dim_customers') }} d ON d.customer_id = a.customer_id AND d.is_current
{% endif %}
