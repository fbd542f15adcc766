-- Consumer bookkeeping, written in the same transaction as the data it
-- describes so that a crash leaves both or neither. IF NOT EXISTS: the
-- migration ledger is keyed by staging/analytics names, so a second
-- namespace (a replay into fresh tables) may share this meta schema.
CREATE SCHEMA IF NOT EXISTS {{meta_schema}};

-- The source of truth for where each group resumes; Kafka's committed
-- offsets trail it and serve monitoring only.
CREATE TABLE IF NOT EXISTS {{meta_schema}}.consumer_offsets (
  consumer_group text NOT NULL,
  topic          text NOT NULL,
  partition      int NOT NULL,
  next_offset    bigint NOT NULL,
  updated_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer_group, topic, partition)
);

-- CLV figures committed to Postgres but not yet confirmed in Redis. A row
-- with a null payload means "this customer has no CLV row any more".
CREATE TABLE IF NOT EXISTS {{meta_schema}}.redis_outbox (
  id          bigserial PRIMARY KEY,
  key_prefix  text NOT NULL,
  customer_id bigint NOT NULL,
  version     bigint NOT NULL,
  payload     jsonb,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- Versions of CLV rows; one sequence per analytics namespace would also do,
-- a global one keeps every write strictly ordered.
CREATE SEQUENCE IF NOT EXISTS {{meta_schema}}.clv_version_seq;

-- What went to a dead-letter topic, so an operator can list it without
-- reading the topic.
CREATE TABLE IF NOT EXISTS {{meta_schema}}.dead_letters (
  id             bigserial PRIMARY KEY,
  consumer_group text NOT NULL,
  topic          text NOT NULL,
  partition      int NOT NULL,
  "offset"       bigint NOT NULL,
  dlq_topic      text NOT NULL,
  error          text NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  UNIQUE (consumer_group, topic, partition, "offset")
);
