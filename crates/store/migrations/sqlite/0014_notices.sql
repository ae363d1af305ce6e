-- Failure emails (issue 18). When an integration was paused: its pause notice names it, and a
-- notice goes out once per pause. NULL for pauses made before this migration, which are never
-- told of (their users may have known for months).
ALTER TABLE integrations ADD COLUMN paused_at INTEGER;
CREATE INDEX integrations_paused ON integrations(paused_at) WHERE state = 'paused';
-- The integrations failing (PostgreSQL has had this index from its first migration): the notifier
-- looks for them every few seconds, the automatic pause every minute; neither scans the table.
CREATE INDEX integrations_failing ON integrations(failing_since)
    WHERE failing_since IS NOT NULL AND state = 'enabled';

-- The last notice of each kind sent for an integration, and the one a node is sending: claiming
-- sets sending_episode and claimed_until, only where the kind's last notice is of another episode,
-- more than a day old, and no other node's claim holds; sending moves sending_episode to episode.
CREATE TABLE notices (
    account_id       TEXT NOT NULL REFERENCES integrations(account_id) ON DELETE CASCADE,
    kind             TEXT NOT NULL CHECK (kind IN ('failing', 'paused', 'recovered')),
    episode          INTEGER,
    sent_at          INTEGER,
    sending_episode  INTEGER,
    claimed_until    INTEGER,
    PRIMARY KEY (account_id, kind)
);
