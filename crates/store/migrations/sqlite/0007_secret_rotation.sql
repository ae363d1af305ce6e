-- Regenerating a signing secret keeps the previous one valid for a while (24 h from the dashboard),
-- signed beside the new one in `webhook-signature`, so receivers can switch without losing events.
-- The previous secret is sealed like the current one (same context), so rotating never re-encrypts.
ALTER TABLE integrations ADD COLUMN previous_signing_secret TEXT;
ALTER TABLE integrations ADD COLUMN previous_secret_expires_at INTEGER;
