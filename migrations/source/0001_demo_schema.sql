-- The demo operational schema of SPEC §1. Real users point the capture at
-- their own database with the same tables.
CREATE SCHEMA IF NOT EXISTS {{source_schema}};

CREATE TABLE {{source_schema}}.customers (
  customer_id      bigint PRIMARY KEY,
  email            text NOT NULL,
  first_name       text NOT NULL,
  last_name        text NOT NULL,
  customer_segment text NOT NULL CHECK (customer_segment IN ('bronze','silver','gold','platinum')),
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {{source_schema}}.products (
  product_id   bigint PRIMARY KEY,
  product_name text NOT NULL,
  category     text NOT NULL,
  price        numeric(10,2) NOT NULL CHECK (price >= 0),
  rating       numeric(3,2) NULL,
  updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {{source_schema}}.orders (
  order_id    bigint PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES {{source_schema}}.customers (customer_id),
  order_date  timestamptz NOT NULL,
  status      text NOT NULL CHECK (status IN ('placed','shipped','delivered','cancelled','returned')),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON {{source_schema}}.orders (customer_id);

CREATE TABLE {{source_schema}}.order_items (
  order_id   bigint NOT NULL REFERENCES {{source_schema}}.orders (order_id) ON DELETE CASCADE,
  product_id bigint NOT NULL REFERENCES {{source_schema}}.products (product_id),
  quantity   int NOT NULL CHECK (quantity > 0),
  unit_price numeric(10,2) NOT NULL CHECK (unit_price >= 0),
  discount   numeric(4,2) NOT NULL DEFAULT 0 CHECK (discount >= 0 AND discount < 1),
  PRIMARY KEY (order_id, product_id)
);

-- updated_at is the event time of every change (SPEC §1): the transaction's
-- now(), so all rows changed by one transaction share it.
CREATE OR REPLACE FUNCTION {{source_schema}}.set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END $$;

CREATE TRIGGER customers_updated_at BEFORE INSERT OR UPDATE ON {{source_schema}}.customers
  FOR EACH ROW EXECUTE FUNCTION {{source_schema}}.set_updated_at();
CREATE TRIGGER products_updated_at BEFORE INSERT OR UPDATE ON {{source_schema}}.products
  FOR EACH ROW EXECUTE FUNCTION {{source_schema}}.set_updated_at();
CREATE TRIGGER orders_updated_at BEFORE INSERT OR UPDATE ON {{source_schema}}.orders
  FOR EACH ROW EXECUTE FUNCTION {{source_schema}}.set_updated_at();

-- Full before-images let consumers retract a row's old contribution and let
-- a delete carry every column, as Debezium users usually configure.
ALTER TABLE {{source_schema}}.customers REPLICA IDENTITY FULL;
ALTER TABLE {{source_schema}}.products REPLICA IDENTITY FULL;
ALTER TABLE {{source_schema}}.orders REPLICA IDENTITY FULL;
ALTER TABLE {{source_schema}}.order_items REPLICA IDENTITY FULL;

-- The capture reads this publication; it also creates it when missing.
CREATE PUBLICATION {{publication}} FOR TABLE
  {{source_schema}}.customers, {{source_schema}}.products,
  {{source_schema}}.orders, {{source_schema}}.order_items;
