-- A support team: each first contact goes to the admin with the fewest conversations (online
-- admins first). The count is kept per admin in a table of its own, so choosing and counting
-- never locks a profiles row (every message and conversation insert takes KEY SHARE locks on
-- profiles through their foreign keys, and the presence heartbeat locks profile rows).
-- Backfilled from the conversations of today; kept by the first contact, reassignment and
-- `helpline admin remove`, each in the transaction that moves a conversation.
CREATE TABLE admin_conversation_counts (
    admin_id uuid PRIMARY KEY
        CONSTRAINT admin_conversation_counts_admin_id_fkey REFERENCES profiles (id),
    conversation_count integer NOT NULL DEFAULT 0
        CONSTRAINT admin_conversation_counts_not_negative CHECK (conversation_count >= 0)
);

INSERT INTO admin_conversation_counts (admin_id, conversation_count)
SELECT p.id, (SELECT count(*) FROM conversations c WHERE c.admin_id = p.id)
FROM profiles p
WHERE p.is_admin OR EXISTS (SELECT 1 FROM conversations c WHERE c.admin_id = p.id);
