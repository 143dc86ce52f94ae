-- Find conversations with customer_id not in profiles
SELECT c.id, c.customer_id, c.created_at
FROM conversations c
LEFT JOIN profiles p ON c.customer_id = p.id
WHERE p.id IS NULL;
