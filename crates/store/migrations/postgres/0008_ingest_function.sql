-- Ingest in one round trip (issue 16, item 6), as migration 0007 did for claims and results: a group
-- commit of batches was ten or more statements in one transaction (lock the keys, lock the
-- integrations, check the accounts, read idempotency keys, read the chains, three inserts, notify,
-- commit, and a savepoint per batch), each a round trip during which the transaction held its locks.
-- This function is the same work next to the data, in one call and one implicit transaction, and
-- keeps the server's `synchronous_commit`: an accepted event is as durable as the operator chose.
--
-- The arguments are one array per column, one element per message, in ingest order; `p_group` says
-- which request's batch each belongs to. A batch naming an account that does not exist stores
-- nothing (each of its rows comes back as `unknown_account` with that account); the other batches
-- are stored as usual. Returns, per message in order: its outcome (`pending` or `paused` when a
-- delivery was queued, `duplicate`, or why it was skipped: `no_integration`, `disabled`,
-- `not_subscribed`), the message id (for a duplicate, the first message's), and its delivery id.
CREATE FUNCTION sipsim_ingest(
    p_now BIGINT, p_window_start BIGINT, p_group BIGINT[], p_message TEXT[], p_delivery TEXT[],
    p_account TEXT[], p_event TEXT[], p_event_bit BIGINT[], p_body BYTEA[], p_key TEXT[],
    p_idem TEXT[])
RETURNS TABLE (o_outcome TEXT, o_message_id TEXT, o_delivery_id TEXT)
LANGUAGE plpgsql VOLATILE
-- Planned without sequential scans, as the claim is (migration 0007): PL/pgSQL keeps a plan for the
-- session, and one made while a table was small would read all of it for each message later.
-- Every table read here has the index it needs.
SET enable_seqscan = off AS $$
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

    -- Queued deliveries wake every node's dispatcher (the channel `DUE_CHANNEL` names).
    IF 'pending' = ANY(v_status) OR 'paused' = ANY(v_status) THEN
        PERFORM pg_notify('sipsim_due', '');
    END IF;

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
