-- A rewind (`npm run replay -- --rewind`) moves a group's stored offsets
-- back and sets rewind_pending: until a batch that starts at or before the
-- rewound offset commits, a batch fetched before the rewind (already past
-- it) may still apply its changes (they are idempotent) but may not store
-- its offset over the rewound one. Running members see the flag and seek.
ALTER TABLE {{meta_schema}}.consumer_offsets ADD COLUMN IF NOT EXISTS rewind_pending boolean NOT NULL DEFAULT false;
