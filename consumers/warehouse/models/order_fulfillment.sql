-- order_fulfillment: per order, when each status was first set (from the
-- order's status history) and the hours from placed to shipped and to
-- delivered.
-- filter('orders'): which orders (the per-key form); all when absent.
SELECT
  o.order_id,
  o.status,
  h.placed_at,
  h.shipped_at,
  h.delivered_at,
  h.cancelled_at,
  h.returned_at,
  round(extract(epoch FROM h.shipped_at - h.placed_at) / 3600, 2) AS hours_to_ship,
  round(extract(epoch FROM h.delivered_at - h.placed_at) / 3600, 2) AS hours_to_deliver
FROM {{ source('stg_orders') }} o
LEFT JOIN (
  SELECT h.order_id,
         min(h.updated_at) FILTER (WHERE h.status = 'placed') AS placed_at,
         min(h.updated_at) FILTER (WHERE h.status = 'shipped') AS shipped_at,
         min(h.updated_at) FILTER (WHERE h.status = 'delivered') AS delivered_at,
         min(h.updated_at) FILTER (WHERE h.status = 'cancelled') AS cancelled_at,
         min(h.updated_at) FILTER (WHERE h.status = 'returned') AS returned_at
  FROM {{ source('order_status_changes') }} h
  WHERE h.op <> 'd' AND {{ filter('orders', 'h.order_id') }}
  GROUP BY h.order_id
) h ON h.order_id = o.order_id
WHERE {{ filter('orders', 'o.order_id') }}
