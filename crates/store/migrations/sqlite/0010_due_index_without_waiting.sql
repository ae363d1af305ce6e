-- The due index without the deliveries waiting behind an earlier event of their call (no due time):
-- they were most of it under a backlog of calls, and SQLite's planner chose its NULL range (every
-- waiting delivery) to release one chain (issue 16). PostgreSQL's index always left them out.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries(next_attempt_at)
    WHERE status = 'pending' AND next_attempt_at IS NOT NULL;
