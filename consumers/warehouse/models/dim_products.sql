-- dim_products: one row per product in staging, with its price tier
-- (docs/contract.md §3: budget < 25 <= mid < 100 <= premium; an unknown
-- price has no tier).
-- filter('products'): which products (the per-key form); all when absent.
SELECT
  md5(product_id::text) AS product_key,
  product_id,
  product_name,
  category,
  price,
  rating,
  CASE
    WHEN price IS NULL THEN NULL
    WHEN price < 25 THEN 'budget'
    WHEN price < 100 THEN 'mid'
    ELSE 'premium'
  END AS price_tier
FROM {{ source('stg_products') }}
WHERE {{ filter('products', 'product_id') }}
