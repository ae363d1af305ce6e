-- What ingest and attempt results cost when requests come one event at a time (issue 16: end-to-end
-- latency at 500 events/s), found with `pg_stat_statements` and `pg_stat_activity`:
--
-- 1. sipsim_ingest (migration 0008) loses its NOTIFY. PostgreSQL serialises every committing
--    transaction that has notified on one lock, held through the commit's WAL flush: with ingest
--    committing synchronously, concurrent ingests (four writers per node) and attempt results queued
--    behind each other's fsync, holding their chain locks meanwhile (ingest waited on that lock in a
--    quarter of the samples). The node now wakes the other nodes after the commit, in a statement of
--    its own that does not wait for the flush, at most a hundred a second however many ingests
--    committed meanwhile (`postgres/signal.rs`); its own dispatcher it wakes in the process, as
--    before.
-- 2. Ingest and attempt results plan their statements once per session (`plan_cache_mode`). PL/pgSQL keeps a
--    statement's plan, but re-plans it for its arguments whenever that plan looks cheaper than the
--    general one; an array of one element always does (the general plan guesses ten), so with
--    single-event requests three statements of ingest and two of results were planned on every
--    call: 0.8 and 0.6 ms of the database's CPU per call, more than their execution. A batch of
--    1,000 looked dearer than the general plan and already used it, so the plans are those batches
--    ran with.
--
-- Otherwise sipsim_ingest is 0008's, unchanged.
CREATE OR REPLACE FUNCTION sipsim_ingest(
    p_now BIGINT, p_window_start BIGINT, p_group BIGINT[], p_message TEXT[], p_delivery TEXT[],
    p_account TEXT[], p_event TEXT[], p_event_bit BIGINT[], p_body BYTEA[], p_key TEXT[],
    p_idem TEXT[])
RETURNS TABLE (o_outcome TEXT, o_message_id TEXT, o_delivery_id TEXT)
LANGUAGE plpgsql VOLATILE
-- Planned without sequential scans, as the claim is (migration 0007): PL/pgSQL keeps a plan for the
-- session, and one made while a table was small would read all of it for each message later.
-- Every table read here has the index it needs.
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    -- Per message, in order: its outcome; the unknown account that fails its batch; the message a
    -- duplicate repeats; its number in its call's chain; when it is due (NULL: waits).
    v_status TEXT[];
    v_bad TEXT[];
    v_first TEXT[];
    v_seq BIGINT[];
    v_due BIGINT[];
BEGIN
    -- Each call's chain and each idempotency key, in ascending order so that two transactions
    -- never wait on each other in a cycle; held to commit, so a call's numbers follow commit order
    -- and two nodes given the same key at once store it once.
    PERFORM pg_advisory_xact_lock(k) FROM (
        SELECT DISTINCT hashtextextended(l.t, 0) AS k FROM (
            SELECT 'chain:' || x.a || ':' || x.c FROM unnest(p_account, p_key) AS x(a, c)
            WHERE x.c IS NOT NULL
            UNION ALL
            SELECT 'idem:' || y.a || ':' || y.i FROM unnest(p_account, p_idem) AS y(a, i)
            WHERE y.i IS NOT NULL) AS l(t)
        ORDER BY k OFFSET 0) AS keys;
    -- The subscriptions read below cannot change (a pause ending, say) before these deliveries are
    -- committed: the integrations are share-locked in account order, as completions write them.
    PERFORM 1 FROM integrations WHERE account_id = ANY(p_account) ORDER BY account_id FOR SHARE;

    -- What becomes of each message. Written as one pass over the messages with index lookups
    -- and window functions, never a join of one intermediate result with another: the planner
    -- cannot know how many messages there are, and its guess of ten made such joins re-run whole
    -- subqueries for every message (measured: 16–24 s for a batch of 1,000).
    SELECT array_agg(s.status ORDER BY s.ord), array_agg(s.bad ORDER BY s.ord),
           array_agg(s.first_id ORDER BY s.ord)
    INTO v_status, v_bad, v_first
    FROM (
        SELECT f.ord, f.bad, f.first_id,
               CASE WHEN f.bad IS NOT NULL THEN 'unknown_account'
                    WHEN f.first_id IS NOT NULL AND f.first_id <> f.message_id THEN 'duplicate'
                    WHEN i.account_id IS NULL THEN 'no_integration'
                    WHEN i.state = 'disabled' THEN 'disabled'
                    WHEN i.event_mask & f.bit = 0 THEN 'not_subscribed'
                    WHEN i.state = 'paused' THEN 'paused'
                    ELSE 'pending' END AS status
        FROM (
            -- A keyed message repeats the message stored with its key in the window, or else the
            -- first of these with its key (in a batch that is stored).
            SELECT g.ord, g.message_id, g.account_id, g.bit, g.bad,
                   CASE WHEN g.idem IS NOT NULL THEN COALESCE(
                       (SELECT k.message_id FROM idempotency_keys k
                        WHERE k.account_id = g.account_id AND k.key = g.idem
                          AND k.created_at > p_window_start),
                       first_value(g.message_id) OVER (
                           PARTITION BY g.bad IS NULL, g.account_id, g.idem ORDER BY g.ord))
                   END AS first_id
            FROM (
                -- A batch naming an account that does not exist stores nothing: each of its
                -- messages carries the first such account.
                SELECT u.*, (array_agg(u.unknown) FILTER (WHERE u.unknown IS NOT NULL) OVER (
                                 PARTITION BY u.grp ORDER BY u.ord
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING))[1]
                                 AS bad
                FROM (
                    SELECT m.*,
                           CASE WHEN NOT EXISTS (SELECT 1 FROM accounts a
                                                 WHERE a.id = m.account_id)
                                THEN m.account_id END AS unknown
                    FROM unnest(p_group, p_message, p_account, p_event_bit, p_idem)
                         WITH ORDINALITY AS m(grp, message_id, account_id, bit, idem, ord)) AS u
            ) AS g
        ) AS f
        LEFT JOIN integrations i ON i.account_id = f.account_id
    ) AS s;

    -- In a chain, the next number (the chain is locked); behind an unfinished delivery a new one
    -- waits (no due time) until that one ends.
    SELECT array_agg(n.seq ORDER BY n.ord), array_agg(n.due ORDER BY n.ord)
    INTO v_seq, v_due
    FROM (
        SELECT q.ord,
               CASE WHEN q.queued AND q.key IS NOT NULL THEN c.last + row_number() OVER w END
                   AS seq,
               CASE WHEN q.queued AND q.key IS NOT NULL AND c.unfinished + row_number() OVER w > 1
                    THEN NULL ELSE p_now END AS due
        FROM (SELECT x.*, x.status IN ('pending', 'paused') AS queued
              FROM unnest(p_account, p_key, v_status) WITH ORDINALITY AS x(account_id, key, status, ord))
             AS q
        CROSS JOIN LATERAL (
            SELECT COALESCE(MAX(d.seq), 0) AS last,
                   COUNT(*) FILTER (WHERE d.status IN ('pending', 'delivering', 'paused'))
                       AS unfinished
            FROM deliveries d
            WHERE q.queued AND q.key IS NOT NULL
              AND d.account_id = q.account_id AND d.ordering_key = q.key) AS c
        WINDOW w AS (PARTITION BY q.queued, q.account_id, q.key ORDER BY q.ord)
    ) AS n;

    INSERT INTO messages (id, account_id, event, body, ordering_key, created_at)
    SELECT x.id, x.account_id, x.event, x.body, x.key, p_now
    FROM unnest(p_message, p_account, p_event, p_body, p_key, v_status)
         AS x(id, account_id, event, body, key, status)
    WHERE x.status NOT IN ('unknown_account', 'duplicate');

    INSERT INTO idempotency_keys (account_id, key, message_id, created_at)
    SELECT x.account_id, x.idem, x.id, p_now
    FROM unnest(p_message, p_account, p_idem, v_status) AS x(id, account_id, idem, status)
    WHERE x.idem IS NOT NULL AND x.status NOT IN ('unknown_account', 'duplicate')
    ON CONFLICT (account_id, key) DO UPDATE SET
        message_id = excluded.message_id, created_at = excluded.created_at;

    INSERT INTO deliveries (id, message_id, account_id, event, status, ordering_key,
                            next_attempt_at, seq, created_at, updated_at)
    SELECT x.id, x.message_id, x.account_id, x.event, x.status, x.key, x.due, x.seq, p_now, p_now
    FROM unnest(p_delivery, p_message, p_account, p_event, v_status, p_key, v_due, v_seq)
         AS x(id, message_id, account_id, event, status, key, due, seq)
    WHERE x.status IN ('pending', 'paused');

    RETURN QUERY
    SELECT x.status,
           CASE x.status WHEN 'unknown_account' THEN x.bad WHEN 'duplicate' THEN x.first_id
                         ELSE x.id END,
           x.delivery_id
    FROM unnest(v_status, v_bad, v_first, p_message, p_delivery)
         WITH ORDINALITY AS x(status, bad, first_id, id, delivery_id, ord)
    ORDER BY x.ord;
END
$$;

-- Attempt results: sipsim_complete (migration 0007) as sipsim_record, which also says how many
-- chains it released, so that the node wakes its dispatcher only when a call's next event became
-- due, instead of after every result of a call (most release nothing: the call's next event has not
-- come yet), and signs its notification so that the node ignores its own. sipsim_complete stays
-- for nodes of the previous version sharing the database during an upgrade.
CREATE FUNCTION sipsim_record(
    p_id TEXT[], p_token TEXT[], p_status TEXT[], p_next BIGINT[], p_code BIGINT[],
    p_error TEXT[], p_started BIGINT[], p_duration BIGINT[], p_snippet TEXT[])
RETURNS TABLE (o_applied TEXT[], o_released BIGINT)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    h_id TEXT[];
    h_account TEXT[];
    h_key TEXT[];
    h_status TEXT[];
    h_started BIGINT[];
    h_ended BIGINT[];
    h_ord BIGINT[];
    v_released BIGINT := 0;
    f RECORD;
BEGIN
    -- Bookkeeping: a server crash may forget the last few hundred milliseconds of results, and
    -- those deliveries are sent again (at-least-once); docs/DECISIONS.md says why that is safe.
    PERFORM set_config('synchronous_commit', 'off', true);

    -- The chains of these deliveries, locked in key order before any row is touched (an ingest
    -- appending to one of them waits, or is waited for).
    PERFORM pg_advisory_xact_lock(k) FROM (
        SELECT DISTINCT hashtextextended('chain:' || d.account_id || ':' || d.ordering_key, 0) AS k
        FROM deliveries d WHERE d.id = ANY(p_id) AND d.ordering_key IS NOT NULL
        ORDER BY k OFFSET 0) AS keys;

    -- End every lease that still holds, record its outcome and log the attempt.
    WITH r AS (
        SELECT * FROM unnest(p_id, p_token, p_status, p_next, p_code, p_error, p_started,
                             p_duration, p_snippet)
            WITH ORDINALITY AS r(id, token, status, next_at, code, error, started, duration,
                                 snippet, ord)),
    done AS (
        UPDATE deliveries d SET status = r.status, next_attempt_at = r.next_at,
               lease_token = NULL, lease_expires_at = NULL, last_status_code = r.code,
               last_error = r.error, updated_at = r.started + r.duration
        FROM r
        WHERE d.id = r.id AND d.lease_token = r.token AND d.status = 'delivering'
        RETURNING d.id, d.attempts, d.account_id, d.ordering_key, r.status, r.started,
                  r.duration, r.code, r.error, r.snippet, r.ord),
    logged AS (
        INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms,
                                       status_code, error, response_snippet)
        SELECT id, attempts, started, duration, code, error, snippet FROM done
        ON CONFLICT (delivery_id, attempt) DO NOTHING)
    SELECT array_agg(id), array_agg(account_id), array_agg(ordering_key), array_agg(status),
           array_agg(started), array_agg(started + duration), array_agg(ord)
    INTO h_id, h_account, h_key, h_status, h_started, h_ended, h_ord
    FROM done;
    IF h_id IS NULL THEN
        RETURN QUERY SELECT ARRAY[]::TEXT[], 0::BIGINT;
        RETURN;
    END IF;

    -- A chain whose delivery ended (succeeded or failed for good) moves on: its earliest
    -- unfinished delivery, if it is waiting, becomes due.
    UPDATE deliveries SET next_attempt_at = c.at, updated_at = c.at
    FROM unnest(h_account, h_key, h_status, h_ended) AS c(account_id, ordering_key, status, at)
    WHERE c.ordering_key IS NOT NULL AND c.status IN ('succeeded', 'failed')
      AND deliveries.account_id = c.account_id AND deliveries.ordering_key = c.ordering_key
      AND deliveries.status = 'pending' AND deliveries.next_attempt_at IS NULL
      AND deliveries.seq = (SELECT MIN(x.seq) FROM deliveries x
                            WHERE x.account_id = c.account_id
                              AND x.ordering_key = c.ordering_key
                              AND x.status IN ('pending', 'delivering', 'paused'));
    GET DIAGNOSTICS v_released = ROW_COUNT;

    -- Each integration's failure clock, as `Failing::after` folds it in the node: after the
    -- account's last success, the first failure's start (or none); with failures only, the first
    -- one's start unless the clock already runs. Written only where it moves, one integration at
    -- a time in account order, as ingest locks them, so the two never wait on each other in a
    -- cycle.
    FOR f IN
        SELECT a.account_id, a.last_success IS NULL AS only_failures,
               (SELECT y.started
                FROM unnest(h_account, h_started, h_ord) AS y(account_id, started, ord)
                WHERE y.account_id = a.account_id AND y.ord > COALESCE(a.last_success, 0)
                ORDER BY y.ord LIMIT 1) AS since
        FROM (SELECT u.account_id, MAX(u.ord) FILTER (WHERE u.status = 'succeeded') AS last_success
              FROM unnest(h_account, h_status, h_ord) AS u(account_id, status, ord)
              GROUP BY u.account_id) AS a
        ORDER BY a.account_id
    LOOP
        IF f.only_failures THEN
            UPDATE integrations SET failing_since = f.since
            WHERE account_id = f.account_id AND failing_since IS NULL;
        ELSE
            UPDATE integrations SET failing_since = f.since
            WHERE account_id = f.account_id AND failing_since IS DISTINCT FROM f.since;
        END IF;
    END LOOP;

    -- Released chains wake the other nodes' dispatchers (the channel `DUE_CHANNEL` names), signed
    -- with this node's tag (set on each of its connections) so that it ignores its own: it wakes
    -- itself in the process when `o_released` says so.
    IF v_released > 0 THEN
        PERFORM pg_notify('sipsim_due', COALESCE(current_setting('sipsim.node', true), ''));
    END IF;
    RETURN QUERY SELECT h_id, v_released;
END
$$;
