-- The delivery queue: messages (what was ingested), deliveries (one per message and integration) and
-- the attempt log. See sipsim_core::queue for the protocol.

CREATE TABLE messages (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    event         TEXT NOT NULL,
    body          BLOB NOT NULL,
    ordering_key  TEXT,
    created_at    INTEGER NOT NULL
);
CREATE INDEX messages_by_created ON messages(created_at);

-- Idempotency keys seen in the last 24 h (older rows are replaced when the key comes back).
CREATE TABLE idempotency_keys (
    account_id  TEXT NOT NULL,
    key         TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (account_id, key)
);

CREATE TABLE deliveries (
    id                TEXT PRIMARY KEY,
    message_id        TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    account_id        TEXT NOT NULL,
    event             TEXT NOT NULL,
    status            TEXT NOT NULL
                      CHECK (status IN ('pending', 'delivering', 'succeeded', 'failed', 'paused')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER,
    lease_token       TEXT,
    lease_expires_at  INTEGER,
    last_status_code  INTEGER,
    last_error        TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
-- A claim is one scan of this index, however many finished deliveries the table holds.
CREATE INDEX deliveries_due ON deliveries(next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_leased ON deliveries(lease_expires_at) WHERE status = 'delivering';
CREATE INDEX deliveries_by_account ON deliveries(account_id, created_at);
CREATE INDEX deliveries_by_lease ON deliveries(lease_token) WHERE lease_token IS NOT NULL;

CREATE TABLE delivery_attempts (
    delivery_id       TEXT NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    attempt           INTEGER NOT NULL,
    started_at        INTEGER NOT NULL,
    duration_ms       INTEGER NOT NULL,
    status_code       INTEGER,
    error             TEXT,
    response_snippet  TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
