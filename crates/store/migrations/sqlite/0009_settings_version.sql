-- One counter that moves whenever any integration's settings change (created, removed, or its
-- `version` bumped: URL, state, subscriptions, secret). API nodes cache integrations in memory and
-- poll this one value to know when to drop the cache; `failing_since` updates do not move it.
CREATE TABLE settings_version (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  INTEGER NOT NULL
);
INSERT INTO settings_version (id, version) VALUES (1, 0);

CREATE TRIGGER integrations_inserted AFTER INSERT ON integrations
BEGIN
    UPDATE settings_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER integrations_deleted AFTER DELETE ON integrations
BEGIN
    UPDATE settings_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER integrations_changed AFTER UPDATE OF version ON integrations
BEGIN
    UPDATE settings_version SET version = version + 1 WHERE id = 1;
END;
