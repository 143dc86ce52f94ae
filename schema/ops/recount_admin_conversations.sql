-- Recount what each admin holds (admin_conversation_counts) from the conversations themselves.
-- The counts balance new customers over the team; run this after a rolling deploy of the
-- release that added them (processes of the previous release did not count their first
-- contacts). Safe to run at any time, on PostgreSQL and SQLite alike.
INSERT INTO admin_conversation_counts (admin_id, conversation_count)
SELECT p.id, (SELECT count(*) FROM conversations c WHERE c.admin_id = p.id)
FROM profiles p
WHERE p.is_admin OR EXISTS (SELECT 1 FROM conversations c WHERE c.admin_id = p.id)
ON CONFLICT (admin_id) DO UPDATE SET conversation_count = excluded.conversation_count;
