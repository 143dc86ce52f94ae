-- A conversation's life (issue #27): OPEN, SNOOZED until snoozed_until, RESOLVED at
-- resolved_at; waiting_since is the time of the customer's oldest message that no staff
-- message has followed yet (NULL when staff spoke last or nobody has written). Existing
-- conversations are OPEN. Adding columns with constant defaults rewrites nothing; the status
-- check is added NOT VALID (no scan under this migration's lock) and validated by 0013,
-- outside any transaction, with waiting_since backfilled there in batches.
--
-- admin_conversation_counts.open_count: the OPEN conversations an admin holds, which is what
-- a first contact now balances on (snoozed and resolved ones do not count). Every conversation
-- is open today, so it starts as conversation_count.
ALTER TABLE conversations
    ADD COLUMN status text NOT NULL DEFAULT 'OPEN',
    ADD COLUMN snoozed_until timestamptz,
    ADD COLUMN resolved_at timestamptz,
    ADD COLUMN waiting_since timestamptz;

ALTER TABLE conversations
    ADD CONSTRAINT conversations_status_check CHECK (
        status IN ('OPEN', 'SNOOZED', 'RESOLVED')
        AND (status = 'SNOOZED') = (snoozed_until IS NOT NULL)
        AND (status = 'RESOLVED') = (resolved_at IS NOT NULL)
    ) NOT VALID;

ALTER TABLE admin_conversation_counts
    ADD COLUMN open_count integer NOT NULL DEFAULT 0
        CONSTRAINT admin_conversation_counts_open_not_negative CHECK (open_count >= 0);

UPDATE admin_conversation_counts SET open_count = conversation_count;
