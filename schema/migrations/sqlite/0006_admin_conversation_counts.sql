-- A support team: each first contact goes to the admin with the fewest conversations (online
-- admins first), counted per admin in a table of its own (see the PostgreSQL migration).
CREATE TABLE admin_conversation_counts (
    admin_id TEXT NOT NULL PRIMARY KEY
        CONSTRAINT admin_conversation_counts_admin_id_fkey REFERENCES profiles (id),
    conversation_count INTEGER NOT NULL DEFAULT 0
        CONSTRAINT admin_conversation_counts_not_negative CHECK (conversation_count >= 0)
);

INSERT INTO admin_conversation_counts (admin_id, conversation_count)
SELECT p.id, (SELECT count(*) FROM conversations c WHERE c.admin_id = p.id)
FROM profiles p
WHERE p.is_admin OR EXISTS (SELECT 1 FROM conversations c WHERE c.admin_id = p.id);
