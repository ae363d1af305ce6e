-- The PostgreSQL schema: the same tables, columns and meanings as the SQLite migrations 0001-0005
-- (times are Unix milliseconds in BIGINT, blobs are BYTEA), created in one step because this backend
-- starts at this version. Later changes get their own numbered files, as on SQLite.

CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_clients (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    secret_hash   BYTEA NOT NULL,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT
);
CREATE INDEX api_clients_by_account ON api_clients(account_id, created_at);

-- Append-only log of deleted clients; every node replays it to reject their tokens.
CREATE TABLE client_revocations (
    seq         BIGSERIAL PRIMARY KEY,
    client_id   TEXT NOT NULL,
    revoked_at  BIGINT NOT NULL
);

-- One integration per account; event_mask holds the subscriptions, one fixed bit per event.
CREATE TABLE integrations (
    account_id      TEXT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    webhook_url     TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('enabled', 'paused', 'disabled')),
    event_mask      BIGINT NOT NULL DEFAULT 0,
    signing_secret  TEXT NOT NULL,
    version         BIGINT NOT NULL DEFAULT 1,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    paused_reason   TEXT,
    failing_since   BIGINT
);

-- The automatic pause looks only at integrations that are failing: a scan of this index, not of every
-- account's integration.
CREATE INDEX integrations_failing ON integrations(failing_since)
    WHERE failing_since IS NOT NULL AND state = 'enabled';

-- Values every node must agree on (the JWT signing key).
CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TABLE messages (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    event         TEXT NOT NULL,
    body          BYTEA NOT NULL,
    ordering_key  TEXT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX messages_by_created ON messages(created_at);

CREATE TABLE idempotency_keys (
    account_id  TEXT NOT NULL,
    key         TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (account_id, key)
);
CREATE INDEX idempotency_keys_by_created ON idempotency_keys(created_at);

CREATE TABLE deliveries (
    id                TEXT PRIMARY KEY,
    message_id        TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    account_id        TEXT NOT NULL,
    event             TEXT NOT NULL,
    status            TEXT NOT NULL
                      CHECK (status IN ('pending', 'delivering', 'succeeded', 'failed', 'paused')),
    attempts          BIGINT NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT,
    lease_token       TEXT,
    lease_expires_at  BIGINT,
    last_status_code  BIGINT,
    last_error        TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    ordering_key      TEXT,
    seq               BIGINT
);
-- A claim is one scan of this partial index: it holds only pending rows with a due time, so its size
-- follows the backlog, not the history (finished deliveries leave it).
CREATE INDEX deliveries_due ON deliveries(next_attempt_at) WHERE status = 'pending' AND next_attempt_at IS NOT NULL;
CREATE INDEX deliveries_leased ON deliveries(lease_expires_at) WHERE status = 'delivering';
CREATE INDEX deliveries_by_lease ON deliveries(lease_token) WHERE lease_token IS NOT NULL;
CREATE INDEX deliveries_by_message ON deliveries(message_id);
-- Keyset pagination of an account's deliveries, newest first by (time-ordered) id.
CREATE INDEX deliveries_by_account_id ON deliveries(account_id, id);
-- Per-call ordering: a key's deliveries in ingest order.
CREATE UNIQUE INDEX deliveries_chain ON deliveries(account_id, ordering_key, seq) WHERE ordering_key IS NOT NULL;
-- Deliveries kept while an integration is paused.
CREATE INDEX deliveries_paused ON deliveries(account_id) WHERE status = 'paused';

CREATE TABLE delivery_attempts (
    delivery_id       TEXT NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    attempt           BIGINT NOT NULL,
    started_at        BIGINT NOT NULL,
    duration_ms       BIGINT NOT NULL,
    status_code       BIGINT,
    error             TEXT,
    response_snippet  TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
