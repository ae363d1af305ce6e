-- One counter that moves whenever any integration's settings change (created, removed, or its
-- `version` bumped: URL, state, subscriptions, secret). API nodes cache integrations in memory,
-- poll this one value, and are told at once through NOTIFY sipsim_settings. `failing_since`
-- updates do not move it. Statement-level: a statement touching many rows bumps it once.
CREATE TABLE settings_version (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  BIGINT NOT NULL
);
INSERT INTO settings_version (id, version) VALUES (1, 0);

CREATE FUNCTION bump_settings_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE settings_version SET version = version + 1 WHERE id = 1;
    PERFORM pg_notify('sipsim_settings', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER integrations_settings_changed
    AFTER INSERT OR DELETE OR UPDATE OF version ON integrations
    FOR EACH STATEMENT EXECUTE FUNCTION bump_settings_version();
