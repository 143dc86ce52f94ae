-- Test: Ensure no orphaned conversations exist
-- This query should always return 0 rows
SELECT 
  c.id as conversation_id,
  c.customer_id,
  c.created_at as conversation_created_at,
  CASE 
    WHEN p.id IS NULL THEN 'MISSING PROFILE'
    ELSE 'OK'
  END as status
FROM conversations c
LEFT JOIN profiles p ON c.customer_id = p.id
WHERE p.id IS NULL;

-- Expected: 0 rows
-- If > 0 rows, this indicates the invariant is violated
