-- A per-account retention period (ms) overriding the server's --retention; NULL keeps the default.
ALTER TABLE accounts ADD COLUMN retention_ms INTEGER;
