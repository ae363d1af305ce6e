-- Fair claims (issue 16): a claim visits the accounts with scheduled work one index seek each (a loose
-- index scan) and takes from each only its free slots, oldest due first, without reading or sorting
-- the rest of the due set (a hanging account's 50,000 due retries cost one seek, not 50,000 rows).
CREATE INDEX deliveries_due_by_account ON deliveries(account_id, next_attempt_at)
    WHERE status = 'pending' AND next_attempt_at IS NOT NULL;
