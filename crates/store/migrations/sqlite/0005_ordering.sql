-- Per-call ordering (DESIGN.md § Ordering): deliveries sharing an ordering key (pbx_id, or call_id for
-- speech/summary/rating) reach an account in ingest order. `seq` numbers a key's deliveries in ingest
-- order; a delivery waiting for an earlier one of its key is `pending` with `next_attempt_at` NULL (so
-- no claim sees it) until its predecessor ends.
ALTER TABLE deliveries ADD COLUMN ordering_key TEXT;
ALTER TABLE deliveries ADD COLUMN seq INTEGER;
CREATE INDEX deliveries_chain ON deliveries(account_id, ordering_key, seq)
    WHERE ordering_key IS NOT NULL;
