-- Clickstream models of SPEC §3, maintained by the `clickstream` consumer
-- group (consumers/clickstream). Every table below except stg_events is
-- derived: recomputed per affected anonymous_id / customer / day from
-- stg_events inside the transaction that stores the batch and its offsets;
-- consumers/clickstream/batch-recompute.ts holds the same definitions as
-- full-refresh SQL. See docs/clickstream.md.

-- Every valid event once. event_id is a uuid column, so dedup does not
-- depend on the letter case the producer used, and ties in session order
-- sort by the uuid's bytes (the same order as its canonical lowercase text).
-- _beyond_lateness: the event arrived more than the allowed lateness behind
-- its anonymous_id's watermark; it is kept here but left out of the session
-- models (docs/clickstream.md, "Late events").
CREATE TABLE {{staging_schema}}.stg_events (
  event_id         uuid PRIMARY KEY,
  event_type       text NOT NULL CHECK (event_type IN ('page_view','product_view','add_to_cart','remove_from_cart','checkout_started','order_placed')),
  occurred_at      timestamptz NOT NULL,
  anonymous_id     text NOT NULL,
  customer_id      bigint,
  product_id       bigint,
  quantity         int,
  unit_price       numeric,
  order_id         bigint,
  page_url         text,
  _beyond_lateness boolean NOT NULL DEFAULT false,
  _kafka_partition int NOT NULL,
  _kafka_offset    bigint NOT NULL,
  _ingested_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON {{staging_schema}}.stg_events (anonymous_id, occurred_at);

-- One row per sessionized event (events beyond the allowed lateness have no
-- session and are not here). product_key is md5(product_id::text), the key
-- of dim_products, computed rather than looked up so that it never depends
-- on whether the product arrived yet on the other consumer group.
CREATE TABLE {{analytics_schema}}.fct_events (
  event_id     uuid PRIMARY KEY,
  session_id   text NOT NULL,
  date_key     int NOT NULL,
  event_type   text NOT NULL,
  occurred_at  timestamptz NOT NULL,
  anonymous_id text NOT NULL,
  customer_id  bigint,
  product_id   bigint,
  product_key  text,
  quantity     int,
  unit_price   numeric,
  order_id     bigint,
  page_url     text
);
CREATE INDEX ON {{analytics_schema}}.fct_events (session_id);
CREATE INDEX ON {{analytics_schema}}.fct_events (anonymous_id, occurred_at);
CREATE INDEX ON {{analytics_schema}}.fct_events (date_key);

CREATE TABLE {{analytics_schema}}.int_session_bounds (
  session_id        text PRIMARY KEY,
  anonymous_id      text NOT NULL,
  customer_id       bigint,
  session_start     timestamptz NOT NULL,
  session_end       timestamptz NOT NULL,
  duration_seconds  numeric NOT NULL,
  event_count       int NOT NULL,
  page_views        int NOT NULL,
  product_views     int NOT NULL,
  add_to_cart_count int NOT NULL,
  reached_checkout  boolean NOT NULL,
  converted         boolean NOT NULL
);
CREATE INDEX ON {{analytics_schema}}.int_session_bounds (anonymous_id, session_end);
CREATE INDEX ON {{analytics_schema}}.int_session_bounds (customer_id, session_start);
CREATE INDEX ON {{analytics_schema}}.int_session_bounds (((session_start AT TIME ZONE 'UTC')::date));

-- Latest session by session_start; ties (two anonymous ids of one customer
-- starting at the same instant) go to the larger session_id in byte order.
CREATE TABLE {{analytics_schema}}.int_last_session_per_customer (
  customer_id   bigint PRIMARY KEY,
  session_id    text NOT NULL,
  anonymous_id  text NOT NULL,
  session_start timestamptz NOT NULL,
  session_end   timestamptz NOT NULL
);

-- Every session has a row; a session without cart events has value 0.
CREATE TABLE {{analytics_schema}}.int_cart_value (
  session_id   text PRIMARY KEY,
  anonymous_id text NOT NULL,
  session_end  timestamptz NOT NULL,
  cart_value   numeric NOT NULL CHECK (cart_value >= 0)
);

CREATE TABLE {{analytics_schema}}.mart_cart_value (
  date_day             date PRIMARY KEY,
  sessions             int NOT NULL,
  sessions_with_cart   int NOT NULL,
  converted_sessions   int NOT NULL,
  abandoned_cart_value numeric NOT NULL,
  conversion_rate      numeric
);

-- A view, not a table: whether the order exists depends on stg_orders,
-- which the warehouse consumer group maintains at its own pace. A stored
-- copy would be stale whenever an order arrives after its clickstream (or
-- is deleted later); the view is exact whatever the arrival order.
-- order_id is that of the session's last order_placed event.
CREATE VIEW {{analytics_schema}}.int_check_order AS
  SELECT s.session_id, s.anonymous_id, s.customer_id,
         s.converted AS order_placed,
         o.order_id,
         (so.order_id IS NOT NULL) AS order_exists
  FROM {{analytics_schema}}.int_session_bounds s
  LEFT JOIN LATERAL (
    SELECT e.order_id FROM {{analytics_schema}}.fct_events e
    WHERE e.session_id = s.session_id AND e.event_type = 'order_placed'
    ORDER BY e.occurred_at DESC, e.event_id DESC LIMIT 1
  ) o ON true
  LEFT JOIN {{staging_schema}}.stg_orders so ON so.order_id = o.order_id
  WHERE s.reached_checkout;
