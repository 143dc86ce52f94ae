-- A conversation's life (see the PostgreSQL migration of the same number): status, when it
-- sleeps until, when it was resolved, since when its customer waits; and each admin's count
-- of open conversations, which a first contact balances on. SQLite checks the status per
-- column (ALTER TABLE cannot add a table constraint); the repository sets them together.
ALTER TABLE conversations ADD COLUMN status TEXT NOT NULL DEFAULT 'OPEN'
    CONSTRAINT conversations_status_check CHECK (status IN ('OPEN', 'SNOOZED', 'RESOLVED'));
ALTER TABLE conversations ADD COLUMN snoozed_until TEXT;
ALTER TABLE conversations ADD COLUMN resolved_at TEXT;
ALTER TABLE conversations ADD COLUMN waiting_since TEXT;

ALTER TABLE admin_conversation_counts
    ADD COLUMN open_count INTEGER NOT NULL DEFAULT 0
        CONSTRAINT admin_conversation_counts_open_not_negative CHECK (open_count >= 0);

UPDATE admin_conversation_counts SET open_count = conversation_count;

UPDATE conversations
SET waiting_since = (
    SELECT min(m.created_at) FROM messages m
    WHERE m.conversation_id = conversations.id AND m.sender_id = conversations.customer_id
      AND m.created_at > COALESCE((
          SELECT max(s.created_at) FROM messages s
          WHERE s.conversation_id = conversations.id AND s.sender_id <> conversations.customer_id
      ), '')
);

CREATE INDEX conversations_waiting_since_idx
    ON conversations (waiting_since) WHERE waiting_since IS NOT NULL AND status <> 'RESOLVED';

CREATE INDEX conversations_snoozed_until_idx
    ON conversations (snoozed_until) WHERE status = 'SNOOZED';
