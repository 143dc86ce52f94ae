-- Monitor: Percentage of users with profiles
SELECT 
  (SELECT COUNT(*) FROM profiles) as profiles_count,
  (SELECT COUNT(*) FROM users) as users_count,
  (SELECT COUNT(*) FROM conversations) as conversations_count,
  (SELECT COUNT(*) FROM conversations c LEFT JOIN profiles p ON c.customer_id = p.id WHERE p.id IS NULL) as orphaned_conversations,
  ROUND(
    (SELECT COUNT(*) FROM profiles)::numeric / 
    NULLIF((SELECT COUNT(*) FROM users), 0) * 100, 
    2
  ) as profile_coverage_percent;
