-- A customer's maximum delivery rate (deliveries per second × 1000; NULL: no throttle).
ALTER TABLE integrations ADD COLUMN max_rate_milli BIGINT;
