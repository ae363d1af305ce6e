-- A claim in one round trip (issue 16: end-to-end latency on PostgreSQL).
--
-- A claim was two statements: the visit of the accounts with scheduled work (a loose index scan,
-- `rotation::visit_sql`), then, with each visited account's share worked out in the node,
-- `sipsim_claim`. Both are on the path from an accepted event to its delivery, and when nothing is
-- due the visit alone was a round trip per wake-up. `sipsim_claim_turn` does both: it visits the
-- accounts from where this node's previous claim stopped, gives each one that is enabled and has
-- work due at most its free slots (its limit, lowered by adaptive concurrency or not, less what it
-- has in flight on this node; never more than the claim's limit) — the rule of
-- `Rotation::shares`, which SQLite still applies in the node — and claims as `sipsim_claim` does.
--
-- It returns the claimed deliveries (o_id set), then one row per visited account in visiting order
-- (o_id NULL, o_account_id the account, o_seq its place), from which the node works out where its
-- next claim goes on. `sipsim_claim` stays for nodes of the previous version during an upgrade.
--
-- `jit = off`: sorts are off for the claim (migration 0007), so the visit's small sort by visiting
-- order is costed as if forbidden, and that cost passes `jit_above_cost`: the first version of this
-- function spent 250 ms compiling each call. A query of a few index probes never gains from JIT.
CREATE FUNCTION sipsim_claim_turn(
    p_token TEXT, p_lease_until BIGINT, p_now BIGINT, p_train BIGINT, p_last TEXT, p_visit BIGINT,
    p_cap BIGINT, p_busy TEXT[], p_busy_n BIGINT[], p_lowered TEXT[], p_lowered_n BIGINT[],
    p_limit BIGINT)
RETURNS TABLE (o_id TEXT, o_message_id TEXT, o_account_id TEXT, o_event TEXT, o_body BYTEA,
               o_attempts BIGINT, o_webhook_url TEXT, o_signing_secret TEXT,
               o_previous_signing_secret TEXT, o_previous_secret_expires_at BIGINT,
               o_ordering_key TEXT, o_seq BIGINT)
LANGUAGE plpgsql VOLATILE
SET enable_sort = off SET enable_seqscan = off SET jit = off AS $$
DECLARE
    v RECORD;
    v_accounts TEXT[] := '{}';
    v_counts BIGINT[] := '{}';
    v_limit BIGINT;
    v_free BIGINT;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    FOR v IN
        WITH RECURSIVE
        up(account, step) AS (
            SELECT (SELECT x.account_id FROM deliveries x
                    WHERE x.status = 'pending' AND x.next_attempt_at IS NOT NULL
                      AND x.account_id > p_last
                    ORDER BY x.account_id LIMIT 1), CAST(1 AS BIGINT)
            UNION ALL
            SELECT (SELECT x.account_id FROM deliveries x
                    WHERE x.status = 'pending' AND x.next_attempt_at IS NOT NULL
                      AND x.account_id > up.account
                    ORDER BY x.account_id LIMIT 1), up.step + 1
            FROM up WHERE up.account IS NOT NULL AND up.step < p_visit),
        around(account, step) AS (
            SELECT (SELECT x.account_id FROM deliveries x
                    WHERE x.status = 'pending' AND x.next_attempt_at IS NOT NULL
                      AND x.account_id <= p_last
                    ORDER BY x.account_id LIMIT 1),
                   (SELECT COUNT(*) FROM up WHERE up.account IS NOT NULL) + 1
            UNION ALL
            SELECT (SELECT x.account_id FROM deliveries x
                    WHERE x.status = 'pending' AND x.next_attempt_at IS NOT NULL
                      AND x.account_id > around.account AND x.account_id <= p_last
                    ORDER BY x.account_id LIMIT 1), around.step + 1
            FROM around WHERE around.account IS NOT NULL AND around.step < p_visit),
        visited(account, step) AS (
            SELECT up.account, up.step FROM up WHERE up.account IS NOT NULL
            UNION ALL
            SELECT around.account, around.step FROM around
            WHERE around.account IS NOT NULL AND around.step <= p_visit)
        SELECT w.account, w.step,
               (SELECT d.next_attempt_at FROM deliveries d
                WHERE d.account_id = w.account AND d.status = 'pending'
                  AND d.next_attempt_at IS NOT NULL
                ORDER BY d.next_attempt_at LIMIT 1) AS first_due,
               i.state = 'enabled' AS enabled
        FROM visited w LEFT JOIN integrations i ON i.account_id = w.account
        ORDER BY w.step
    LOOP
        o_id := NULL; o_message_id := NULL; o_event := NULL; o_body := NULL; o_attempts := NULL;
        o_webhook_url := NULL; o_signing_secret := NULL; o_previous_signing_secret := NULL;
        o_previous_secret_expires_at := NULL; o_ordering_key := NULL;
        o_account_id := v.account;
        o_seq := v.step;
        RETURN NEXT;
        IF v.enabled AND v.first_due IS NOT NULL AND v.first_due <= p_now THEN
            v_limit := LEAST(GREATEST(COALESCE(
                (SELECT l.n FROM unnest(p_lowered, p_lowered_n) AS l(a, n) WHERE l.a = v.account
                 LIMIT 1), p_cap), 1), p_cap);
            v_free := LEAST(v_limit - COALESCE(
                (SELECT b.n FROM unnest(p_busy, p_busy_n) AS b(a, n) WHERE b.a = v.account
                 LIMIT 1), 0), p_limit);
            IF v_free > 0 THEN
                v_accounts := v_accounts || v.account;
                v_counts := v_counts || v_free;
            END IF;
        END IF;
    END LOOP;
    IF cardinality(v_accounts) = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH due AS (
        SELECT d.id, d.account_id, d.ordering_key, d.seq
        FROM unnest(v_accounts, v_counts) AS w(account, n)
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
