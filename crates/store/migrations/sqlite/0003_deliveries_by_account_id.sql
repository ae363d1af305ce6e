-- The deliveries API lists an account's deliveries newest first by id (ids are time-ordered) with
-- keyset pagination (`id < last seen`): one index range scan per page, however deep the page.
CREATE INDEX deliveries_by_account_id ON deliveries(account_id, id);
