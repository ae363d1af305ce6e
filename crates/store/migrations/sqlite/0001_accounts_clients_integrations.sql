-- Accounts, API clients, webhook integrations and node-shared settings.
-- Times are Unix milliseconds (INTEGER), so the PostgreSQL schema can mirror this one with BIGINT.

CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_clients (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    secret_hash   BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER
);
CREATE INDEX api_clients_by_account ON api_clients(account_id, created_at);

-- Append-only log of deleted clients; every node replays it to reject their tokens.
CREATE TABLE client_revocations (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id   TEXT NOT NULL,
    revoked_at  INTEGER NOT NULL
);

-- One integration per account. event_mask holds the subscriptions, one fixed bit per event
-- (sipsim_core::Event::bit), so enabling or disabling one event is a single atomic UPDATE.
CREATE TABLE integrations (
    account_id      TEXT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    webhook_url     TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('enabled', 'paused', 'disabled')),
    event_mask      INTEGER NOT NULL DEFAULT 0,
    signing_secret  TEXT NOT NULL,
    version         INTEGER NOT NULL DEFAULT 1,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- Values every node must agree on (the JWT signing key).
CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
