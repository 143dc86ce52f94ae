-- transactional: false
-- The conversations auto-resolve looks at (AUTO_RESOLVE_AFTER_HOURS): open, nobody waiting,
-- quietest first. Built CONCURRENTLY (writes go on); an index a failed build left INVALID is
-- dropped and built again.
DROP INDEX CONCURRENTLY IF EXISTS conversations_quiet_idx;

CREATE INDEX CONCURRENTLY conversations_quiet_idx
    ON conversations (last_message_at) WHERE status = 'OPEN' AND waiting_since IS NULL;
