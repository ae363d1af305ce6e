-- Pausing (DESIGN.md § Paused, never lost): why and since when an integration is paused, and since
-- when every attempt to it has failed (cleared by any success), for the automatic pause.
ALTER TABLE integrations ADD COLUMN paused_reason TEXT;
ALTER TABLE integrations ADD COLUMN failing_since INTEGER;
