-- Ingest takes its calls' chain locks late (issue 16: ordered ingest within 1.3× of unordered).
--
-- A call's chain lock is held to commit, so that its events are numbered in commit order. A batch
-- of call events shares calls with the batches ingested just before and after it (a call's events
-- span minutes), so two of a node's four ingest writers mostly wanted the same chains, and the
-- second waited for the first's whole transaction: sampled during the call-events benchmark, ingest
-- waited on `Lock`/`advisory` in 104 samples and ran in 45, while SMS batches ran side by side.
-- What needs no chain is now done before the chain locks are taken: which accounts exist, which
-- messages repeat an idempotency key (under the key's lock, taken first as before), and the messages
-- themselves are written. Then the chains are locked, then the integrations share-locked (the order
-- attempt results take them in, so the two never wait on each other in a cycle), and then the
-- subscriptions are read, the chains numbered and the deliveries written, as in 0009.
--
-- Lock order: idempotency keys (only ingest takes them), then chains, then integrations. A
-- transaction holding keys waits for chains; one holding chains never waits for a key.
CREATE OR REPLACE FUNCTION sipsim_ingest(
    p_now BIGINT, p_window_start BIGINT, p_group BIGINT[], p_message TEXT[], p_delivery TEXT[],
    p_account TEXT[], p_event TEXT[], p_event_bit BIGINT[], p_body BYTEA[], p_key TEXT[],
    p_idem TEXT[])
RETURNS TABLE (o_outcome TEXT, o_message_id TEXT, o_delivery_id TEXT)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    -- Per message, in order: the unknown account that fails its batch; the message a duplicate
    -- repeats; its outcome; its number in its call's chain; when it is due (NULL: waits).
    v_bad TEXT[];
    v_first TEXT[];
    v_status TEXT[];
    v_seq BIGINT[];
    v_due BIGINT[];
BEGIN
    -- Idempotency keys, in ascending order, held to commit: two nodes given the same key at once
    -- store it once.
    PERFORM pg_advisory_xact_lock(k) FROM (
        SELECT DISTINCT hashtextextended('idem:' || y.a || ':' || y.i, 0) AS k
        FROM unnest(p_account, p_idem) AS y(a, i)
        WHERE y.i IS NOT NULL
        ORDER BY k OFFSET 0) AS keys;

    -- Which messages are stored: not those of a batch naming an unknown account, nor repeats of a
    -- key. One pass over the messages with index lookups and window functions, never a join of one
    -- intermediate result with another: the planner cannot know how many messages there are, and
    -- its guess of ten made such joins re-run whole subqueries for every message (measured:
    -- 16–24 s for a batch of 1,000).
    SELECT array_agg(f.bad ORDER BY f.ord), array_agg(f.first_id ORDER BY f.ord)
    INTO v_bad, v_first
    FROM (
        -- A keyed message repeats the message stored with its key in the window, or else the
        -- first of these with its key (in a batch that is stored).
        SELECT g.ord, g.bad,
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
                FROM unnest(p_group, p_message, p_account, p_idem)
                     WITH ORDINALITY AS m(grp, message_id, account_id, idem, ord)) AS u
        ) AS g
    ) AS f;

    INSERT INTO messages (id, account_id, event, body, ordering_key, created_at)
    SELECT x.id, x.account_id, x.event, x.body, x.key, p_now
    FROM unnest(p_message, p_account, p_event, p_body, p_key, v_bad, v_first)
         AS x(id, account_id, event, body, key, bad, first_id)
    WHERE x.bad IS NULL AND (x.first_id IS NULL OR x.first_id = x.id);

    INSERT INTO idempotency_keys (account_id, key, message_id, created_at)
    SELECT x.account_id, x.idem, x.id, p_now
    FROM unnest(p_message, p_account, p_idem, v_bad, v_first)
         AS x(id, account_id, idem, bad, first_id)
    WHERE x.idem IS NOT NULL AND x.bad IS NULL AND x.first_id = x.id
    ON CONFLICT (account_id, key) DO UPDATE SET
        message_id = excluded.message_id, created_at = excluded.created_at;

    -- Each call's chain, in ascending order, held to commit: a call's numbers follow commit order.
    PERFORM pg_advisory_xact_lock(k) FROM (
        SELECT DISTINCT hashtextextended('chain:' || x.a || ':' || x.c, 0) AS k
        FROM unnest(p_account, p_key, v_bad, v_first, p_message)
             AS x(a, c, bad, first_id, id)
        WHERE x.c IS NOT NULL AND x.bad IS NULL AND (x.first_id IS NULL OR x.first_id = x.id)
        ORDER BY k OFFSET 0) AS keys;
    -- The subscriptions read below cannot change (a pause ending, say) before these deliveries are
    -- committed: the integrations are share-locked in account order, as completions write them.
    PERFORM 1 FROM integrations WHERE account_id = ANY(p_account) ORDER BY account_id FOR SHARE;

    SELECT array_agg(
               CASE WHEN x.bad IS NOT NULL THEN 'unknown_account'
                    WHEN x.first_id IS NOT NULL AND x.first_id <> x.id THEN 'duplicate'
                    WHEN i.account_id IS NULL THEN 'no_integration'
                    WHEN i.state = 'disabled' THEN 'disabled'
                    WHEN i.event_mask & x.bit = 0 THEN 'not_subscribed'
                    WHEN i.state = 'paused' THEN 'paused'
                    ELSE 'pending' END ORDER BY x.ord)
    INTO v_status
    FROM unnest(p_message, p_account, p_event_bit, v_bad, v_first)
         WITH ORDINALITY AS x(id, account_id, bit, bad, first_id, ord)
    LEFT JOIN integrations i ON i.account_id = x.account_id;

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
