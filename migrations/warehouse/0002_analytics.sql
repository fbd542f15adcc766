-- The star schema and marts of SPEC §3. Every table here is derived from
-- staging and recomputed per affected key by the warehouse consumer
-- (src/sinks/postgres/recompute.ts); src/sinks/postgres/batch-recompute.ts
-- holds the same definitions as full-refresh SQL, used to verify them.
CREATE SCHEMA IF NOT EXISTS {{analytics_schema}};

CREATE TABLE {{analytics_schema}}.dim_date (
  date_key     int PRIMARY KEY,
  date_day     date NOT NULL UNIQUE,
  year         int NOT NULL,
  quarter      int NOT NULL,
  month        int NOT NULL,
  week_of_year int NOT NULL,
  day_of_week  int NOT NULL,
  is_weekend   boolean NOT NULL,
  is_weekday   boolean NOT NULL,
  month_name   text NOT NULL,
  day_name     text NOT NULL
);

-- One definition of a dim_date row, shared by the initial fill, the
-- consumer's extension and the batch recomputation. to_char without the TM
-- prefix always yields English names, whatever lc_time is.
CREATE FUNCTION {{analytics_schema}}.dim_date_rows(first_day date, last_day date)
RETURNS SETOF {{analytics_schema}}.dim_date
LANGUAGE sql IMMUTABLE AS $$
  SELECT to_char(d, 'YYYYMMDD')::int,
         d::date,
         extract(year FROM d)::int,
         extract(quarter FROM d)::int,
         extract(month FROM d)::int,
         extract(week FROM d)::int,
         extract(isodow FROM d)::int,
         extract(isodow FROM d) >= 6,
         extract(isodow FROM d) < 6,
         to_char(d, 'FMMonth'),
         to_char(d, 'FMDay')
  FROM generate_series(first_day::timestamp, last_day::timestamp, interval '1 day') AS d
$$;

INSERT INTO {{analytics_schema}}.dim_date
SELECT * FROM {{analytics_schema}}.dim_date_rows('2020-01-01', '2030-12-31');

CREATE TABLE {{analytics_schema}}.dim_products (
  product_key  text NOT NULL UNIQUE,
  product_id   bigint PRIMARY KEY,
  product_name text,
  category     text,
  price        numeric,
  rating       numeric,
  price_tier   text
);

CREATE TABLE {{analytics_schema}}.dim_customers (
  customer_key     text PRIMARY KEY,
  customer_id      bigint NOT NULL,
  email            text,
  full_name        text,
  customer_segment text,
  effective_date   timestamptz NOT NULL,
  expiration_date  timestamptz NOT NULL,
  is_current       boolean NOT NULL
);
CREATE INDEX ON {{analytics_schema}}.dim_customers (customer_id, effective_date);

CREATE TABLE {{analytics_schema}}.fact_orders (
  order_item_key text PRIMARY KEY,
  order_id       bigint NOT NULL,
  product_id     bigint NOT NULL,
  customer_id    bigint,
  customer_key   text,
  product_key    text NOT NULL,
  date_key       int,
  order_date     timestamptz,
  status         text,
  quantity       int,
  unit_price     numeric,
  discount       numeric,
  line_total     numeric,
  order_total    numeric
);
CREATE INDEX ON {{analytics_schema}}.fact_orders (order_id);
CREATE INDEX ON {{analytics_schema}}.fact_orders (customer_id);
CREATE INDEX ON {{analytics_schema}}.fact_orders (product_id);
CREATE INDEX ON {{analytics_schema}}.fact_orders (date_key);

-- Recency (days_since_last_order, recency_segment) depends on the clock, not
-- on events, so it is computed at read time (see the view below), never stored.
-- `version` orders the Redis writes of this row (see src/sinks/redis/clv-write.lua).
CREATE TABLE {{analytics_schema}}.customer_lifetime_value (
  customer_id            bigint PRIMARY KEY,
  customer_key           text,
  customer_segment       text,
  total_orders           int NOT NULL,
  total_items            bigint NOT NULL,
  total_revenue          numeric NOT NULL,
  avg_order_value        numeric NOT NULL,
  first_order_date       timestamptz NOT NULL,
  last_order_date        timestamptz NOT NULL,
  customer_lifetime_days int NOT NULL,
  value_segment          text NOT NULL,
  frequency_segment      text NOT NULL,
  version                bigint NOT NULL
);
CREATE INDEX ON {{analytics_schema}}.customer_lifetime_value (total_revenue DESC);

CREATE VIEW {{analytics_schema}}.customer_lifetime_value_now AS
  SELECT c.*,
         floor(extract(epoch FROM now() - c.last_order_date) / 86400)::int AS days_since_last_order,
         CASE WHEN now() - c.last_order_date <= interval '30 days' THEN 'active'
              WHEN now() - c.last_order_date <= interval '90 days' THEN 'cooling'
              WHEN now() - c.last_order_date <= interval '180 days' THEN 'at_risk'
              ELSE 'churned' END AS recency_segment
  FROM {{analytics_schema}}.customer_lifetime_value c;

CREATE TABLE {{analytics_schema}}.mart_sales (
  date_key int NOT NULL,
  category text NOT NULL,
  orders   int NOT NULL,
  units    bigint NOT NULL,
  revenue  numeric NOT NULL,
  PRIMARY KEY (date_key, category)
);

CREATE TABLE {{analytics_schema}}.order_fulfillment (
  order_id         bigint PRIMARY KEY,
  status           text,
  placed_at        timestamptz,
  shipped_at       timestamptz,
  delivered_at     timestamptz,
  cancelled_at     timestamptz,
  returned_at      timestamptz,
  hours_to_ship    numeric,
  hours_to_deliver numeric
);
