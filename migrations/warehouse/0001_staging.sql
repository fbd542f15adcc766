-- Staging: exactly the current source rows (SPEC §3), each stamped with the
-- LSN of the change that last wrote it. Upserts only win when their LSN is
-- not older than the stored one, so redelivered or replayed events are no-ops.
-- Types mirror the source (SPEC §1); timestamps keep microseconds.
CREATE SCHEMA IF NOT EXISTS {{staging_schema}};

CREATE TABLE {{staging_schema}}.stg_customers (
  customer_id      bigint PRIMARY KEY,
  email            text,
  first_name       text,
  last_name        text,
  customer_segment text,
  created_at       timestamptz,
  updated_at       timestamptz,
  email_normalized text,
  full_name        text,
  _source_lsn      bigint NOT NULL,
  _ingested_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {{staging_schema}}.stg_products (
  product_id   bigint PRIMARY KEY,
  product_name text,
  category     text,
  price        numeric,
  rating       numeric,
  updated_at   timestamptz,
  _source_lsn  bigint NOT NULL,
  _ingested_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {{staging_schema}}.stg_orders (
  order_id     bigint PRIMARY KEY,
  customer_id  bigint,
  order_date   timestamptz,
  status       text,
  updated_at   timestamptz,
  _source_lsn  bigint NOT NULL,
  _ingested_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON {{staging_schema}}.stg_orders (customer_id);

CREATE TABLE {{staging_schema}}.stg_order_items (
  order_id     bigint NOT NULL,
  product_id   bigint NOT NULL,
  quantity     int,
  unit_price   numeric,
  discount     numeric,
  _source_lsn  bigint NOT NULL,
  _ingested_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (order_id, product_id)
);
CREATE INDEX ON {{staging_schema}}.stg_order_items (product_id);

-- A delete removes the staging row, so the LSN guard needs somewhere to
-- remember it: an older upsert replayed after the delete must not revive
-- the row. `row_key` is the primary key rendered as text ('1' or '1,2').
CREATE TABLE {{staging_schema}}.stg_tombstones (
  table_name  text NOT NULL,
  row_key     text NOT NULL,
  _source_lsn bigint NOT NULL,
  PRIMARY KEY (table_name, row_key)
);

-- History: every change of a customer, the input of the SCD2 walk
-- (src/transforms/scd2.ts). Keyed by (customer_id, lsn) so redelivery is a
-- no-op. Attributes are null for deletes whose before-image lacks them.
CREATE TABLE {{staging_schema}}.customer_changes (
  customer_id      bigint NOT NULL,
  lsn              bigint NOT NULL,
  op               char(1) NOT NULL CHECK (op IN ('c','u','d','r')),
  updated_at       timestamptz,
  committed_at     timestamptz NOT NULL,
  customer_segment text,
  email_normalized text,
  full_name        text,
  PRIMARY KEY (customer_id, lsn)
);

-- History of orders: the input of order_fulfillment (first time each status
-- was set) and of dim_date's extension (every order date ever seen).
CREATE TABLE {{staging_schema}}.order_status_changes (
  order_id     bigint NOT NULL,
  lsn          bigint NOT NULL,
  op           char(1) NOT NULL CHECK (op IN ('c','u','d','r')),
  status       text,
  updated_at   timestamptz,
  committed_at timestamptz NOT NULL,
  order_date   timestamptz,
  customer_id  bigint,
  PRIMARY KEY (order_id, lsn)
);
