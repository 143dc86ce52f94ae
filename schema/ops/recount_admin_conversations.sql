-- Recount what each admin holds (admin_conversation_counts) from the conversations themselves:
-- every conversation, and the open ones (what new customers are balanced on). Run this after a
-- rolling deploy of a release that changed how they are counted (processes of the previous
-- release did not count their first contacts, or their open conversations). Safe to run at any
-- time, on PostgreSQL and SQLite alike; `helpline integrity repair --apply` does the same for
-- the admins whose counts drifted, in short transactions.
INSERT INTO admin_conversation_counts (admin_id, conversation_count, open_count)
SELECT p.id,
       (SELECT count(*) FROM conversations c WHERE c.admin_id = p.id),
       (SELECT count(*) FROM conversations c WHERE c.admin_id = p.id AND c.status = 'OPEN')
FROM profiles p
WHERE p.is_admin OR EXISTS (SELECT 1 FROM conversations c WHERE c.admin_id = p.id)
ON CONFLICT (admin_id) DO UPDATE
SET conversation_count = excluded.conversation_count, open_count = excluded.open_count;
