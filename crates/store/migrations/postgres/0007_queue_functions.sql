-- The delivery queue's two hottest calls in one round trip each (issue 16, item 6): recording attempt
-- results, and claiming due work. Each was several statements in one transaction, each a round trip
-- during which the transaction held its locks and the connection sat idle waiting for the node; on
-- PostgreSQL most of a delivery's time was spent there (docs/BENCHMARKS.md). These functions are the
-- same work run next to the data, called in autocommit: one round trip, one implicit transaction.
--
-- A VOLATILE PL/pgSQL function takes a new snapshot for each statement under READ COMMITTED, so
-- "lock the chains, then read them" still holds: a statement after a lock sees every transaction
-- that committed before the lock was granted. PL/pgSQL also keeps each statement's plan for the
-- session, as a prepared statement would.

-- Attempt results.
--
-- The arguments are one array per column, one element per result, in the order the node recorded
-- them (the failure clock depends on that order). Returns the ids of the deliveries whose lease
-- still held; the others were left untouched.
CREATE FUNCTION sipsim_complete(
    p_id TEXT[], p_token TEXT[], p_status TEXT[], p_next BIGINT[], p_code BIGINT[],
    p_error TEXT[], p_started BIGINT[], p_duration BIGINT[], p_snippet TEXT[])
RETURNS SETOF TEXT
LANGUAGE plpgsql VOLATILE AS $$
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

    -- Released chains wake every node's dispatcher (the channel `DUE_CHANNEL` names).
    IF v_released > 0 THEN
        PERFORM pg_notify('sipsim_due', '');
    END IF;
    RETURN QUERY SELECT unnest(h_id);
END
$$;

-- A claim: each account's share of its oldest due rows that no other node holds (their row locks
-- make a concurrent claim skip them), one index range each, in visiting order (a nested loop over the
-- list) until `p_limit`; lease them, and return what sending needs. The node visited the accounts and
-- computed the shares just before (`rotation.rs`), in its own statement.
--
-- The integration is checked again (it may have been disabled since the visit) inside each account's
-- range, so that the list stays the loop's outer side. Behind each head of a chain, the deliveries
-- waiting right behind it (a train): while the head is unfinished nothing else of its chain is due or
-- leased. They are not locked before the update; one changed meanwhile fails the update's status check
-- and is left out (the dispatcher sends a train only up to its first gap). The ids are gathered once
-- (`ARRAY(…)`, an init plan) and looked up by key: joined instead, a plan made with stale statistics
-- ran the whole `due` and `train` subqueries again for each row of `deliveries` it read.
--
-- Planned without sorts or sequential scans (the SET clauses hold while the function runs, which is
-- when its statement is planned): statistics lag behind a burst (until (auto)analyze; never where
-- autovacuum is off), and the planner then thinks few rows are due and sorts every due row, 300 ms
-- per claim at 200,000 due (measured), instead of reading the index in order and stopping at the
-- share; and statistics taken a moment before a burst (most deliveries `succeeded`) made a scan of
-- all of `deliveries` look like one row (a claim of 64 took 9.5 s at 25,000 rows). A lease is
-- bookkeeping too: committed without waiting for the disk.
CREATE FUNCTION sipsim_claim(
    p_token TEXT, p_lease_until BIGINT, p_now BIGINT, p_train BIGINT, p_accounts TEXT[],
    p_counts BIGINT[], p_limit BIGINT)
RETURNS TABLE (o_id TEXT, o_message_id TEXT, o_account_id TEXT, o_event TEXT, o_body BYTEA,
               o_attempts BIGINT, o_webhook_url TEXT, o_signing_secret TEXT,
               o_previous_signing_secret TEXT, o_previous_secret_expires_at BIGINT,
               o_ordering_key TEXT, o_seq BIGINT)
LANGUAGE plpgsql VOLATILE
SET enable_sort = off SET enable_seqscan = off AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN QUERY
    WITH due AS (
        SELECT d.id, d.account_id, d.ordering_key, d.seq
        FROM unnest(p_accounts, p_counts) AS w(account, n)
        CROSS JOIN LATERAL (
            SELECT x.id, x.account_id, x.ordering_key, x.seq FROM deliveries x
            WHERE x.account_id = w.account AND x.status = 'pending'
              AND x.next_attempt_at IS NOT NULL AND x.next_attempt_at <= p_now
              AND EXISTS (SELECT 1 FROM integrations i
                          WHERE i.account_id = w.account AND i.state = 'enabled')
            ORDER BY x.next_attempt_at LIMIT w.n
            FOR UPDATE OF x SKIP LOCKED) AS d
        LIMIT p_limit),
    train AS (
        SELECT f.id FROM due h JOIN deliveries f
          ON f.ordering_key IS NOT NULL AND f.account_id = h.account_id
         AND f.ordering_key = h.ordering_key AND f.seq > h.seq AND f.seq < h.seq + p_train
        WHERE h.ordering_key IS NOT NULL
          AND f.status = 'pending' AND f.next_attempt_at IS NULL),
    claimed AS (
        UPDATE deliveries SET status = 'delivering', lease_token = p_token,
               lease_expires_at = p_lease_until, attempts = deliveries.attempts + 1,
               updated_at = p_now
        WHERE deliveries.id = ANY(ARRAY(SELECT id FROM due UNION ALL SELECT id FROM train))
          AND deliveries.status = 'pending'
        RETURNING deliveries.id, deliveries.message_id, deliveries.account_id,
                  deliveries.attempts, deliveries.ordering_key, deliveries.seq)
    SELECT d.id, d.message_id, d.account_id, m.event, m.body, d.attempts, i.webhook_url,
           i.signing_secret, i.previous_signing_secret, i.previous_secret_expires_at,
           d.ordering_key, d.seq
    FROM claimed d
    JOIN messages m ON m.id = d.message_id
    JOIN integrations i ON i.account_id = d.account_id;
END
$$;
