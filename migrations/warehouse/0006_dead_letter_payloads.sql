-- A record too large for its dead-letter topic (bigger than the DLQ topic's
-- max.message.bytes) is not sent there: the consumer keeps its key, value
-- and headers here, in the batch transaction that skips its offset, and
-- writes a small note record to the DLQ topic instead (docs/consumers.md,
-- "Dead letters"). Headers are a JSON object of base64 strings (Kafka
-- header values are bytes). IF NOT EXISTS: a second namespace may share
-- this meta schema (see 0003).
ALTER TABLE {{meta_schema}}.dead_letters ADD COLUMN IF NOT EXISTS kept_in_table boolean NOT NULL DEFAULT false;
ALTER TABLE {{meta_schema}}.dead_letters ADD COLUMN IF NOT EXISTS message_key bytea;
ALTER TABLE {{meta_schema}}.dead_letters ADD COLUMN IF NOT EXISTS message_value bytea;
ALTER TABLE {{meta_schema}}.dead_letters ADD COLUMN IF NOT EXISTS message_headers jsonb;
