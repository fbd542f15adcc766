-- dim_customers: SCD type 2 over the customer change history; a new
-- version when the segment changes, closed by the next version or the
-- customer's delete (docs/contract.md). The per-key form walks the same
-- rules in TypeScript (src/transforms/scd2.ts, unit-tested against this).
WITH h AS (
  SELECT *, lead(op) OVER w AS next_op, lead(updated_at) OVER w AS next_upd
  FROM {{ source('customer_changes') }}
  WINDOW w AS (PARTITION BY customer_id ORDER BY seq, lsn)
),
-- one change per run of same-updated_at upserts: keep the run's last row
runs AS (
  SELECT * FROM h
  WHERE op = 'd' OR NOT (next_op IS NOT NULL AND next_op <> 'd' AND next_upd IS NOT DISTINCT FROM updated_at)
),
-- life = number of deletes before the row; a delete ends the life it numbers
lives AS (
  SELECT *, coalesce(count(*) FILTER (WHERE op = 'd') OVER (PARTITION BY customer_id ORDER BY seq, lsn ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS life
  FROM runs
),
ups AS (
  SELECT *, CASE WHEN lag(lsn) OVER wl IS NULL OR lag(customer_segment) OVER wl IS DISTINCT FROM customer_segment THEN 1 ELSE 0 END AS starts
  FROM lives WHERE op <> 'd' AND updated_at IS NOT NULL
  WINDOW wl AS (PARTITION BY customer_id, life ORDER BY seq, lsn)
),
ver AS (SELECT *, sum(starts) OVER (PARTITION BY customer_id ORDER BY seq, lsn) AS vno FROM ups),
vagg AS (
  SELECT customer_id, life, vno,
         min(updated_at) FILTER (WHERE starts = 1) AS effective_date,
         (array_agg(email_normalized ORDER BY seq DESC, lsn DESC))[1] AS email,
         (array_agg(full_name ORDER BY seq DESC, lsn DESC))[1] AS full_name,
         (array_agg(customer_segment ORDER BY seq DESC, lsn DESC))[1] AS customer_segment
  FROM ver GROUP BY customer_id, life, vno
),
dels AS (SELECT customer_id, life, committed_at FROM lives WHERE op = 'd'),
closed AS (
  SELECT v.*, lead(v.effective_date) OVER (PARTITION BY v.customer_id, v.life ORDER BY v.vno) AS next_eff, d.committed_at AS deleted_at
  FROM vagg v LEFT JOIN dels d ON d.customer_id = v.customer_id AND d.life = v.life
)
SELECT md5(customer_id::text || '-' || to_char(effective_date AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')) AS customer_key,
       customer_id, email, full_name, customer_segment, effective_date,
       coalesce(next_eff, deleted_at, '9999-12-31T00:00:00Z'::timestamptz) AS expiration_date,
       next_eff IS NULL AND deleted_at IS NULL AS is_current
FROM closed
