-- Fix existing orphaned conversations by creating missing profiles
INSERT INTO profiles (id, name, avatar_url, is_admin, is_online)
SELECT 
  c.customer_id,
  COALESCE(u.full_name, u.email, 'User') as name,
  COALESCE(u.profile_picture_url, '') as avatar_url,
  false as is_admin,
  false as is_online
FROM conversations c
LEFT JOIN profiles p ON c.customer_id = p.id
LEFT JOIN users u ON c.customer_id = u.id
WHERE p.id IS NULL
ON CONFLICT (id) DO NOTHING;
