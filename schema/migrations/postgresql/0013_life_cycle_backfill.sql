-- transactional: false
-- The life cycle's second step, each statement its own transaction so no lock is held long
-- on a large conversations table: the status check validated (SHARE UPDATE EXCLUSIVE: reads
-- and writes go on), waiting_since backfilled 5,000 conversations a commit, and the indexes
-- the waiting and snoozed conversations are found by, built CONCURRENTLY. Rerunnable: a run
-- cut short leaves nothing a second run trips on (an index left INVALID by a failed build is
-- dropped and built again).
ALTER TABLE conversations VALIDATE CONSTRAINT conversations_status_check;

DO $$
DECLARE
    done uuid := '00000000-0000-0000-0000-000000000000';
    upto uuid;
BEGIN
    LOOP
        SELECT batch.id INTO upto
        FROM (SELECT id FROM conversations WHERE id > done ORDER BY id LIMIT 5000) batch
        ORDER BY batch.id DESC LIMIT 1;
        EXIT WHEN upto IS NULL;
        UPDATE conversations c
        SET waiting_since = (
            SELECT min(m.created_at) FROM messages m
            WHERE m.conversation_id = c.id AND m.sender_id = c.customer_id
              AND m.created_at > COALESCE((
                  SELECT max(s.created_at) FROM messages s
                  WHERE s.conversation_id = c.id AND s.sender_id <> c.customer_id
              ), '-infinity')
        )
        WHERE c.id > done AND c.id <= upto AND c.waiting_since IS NULL;
        done := upto;
        COMMIT;
    END LOOP;
END $$;

DROP INDEX CONCURRENTLY IF EXISTS conversations_waiting_since_idx;

CREATE INDEX CONCURRENTLY conversations_waiting_since_idx
    ON conversations (waiting_since) WHERE waiting_since IS NOT NULL AND status <> 'RESOLVED';

DROP INDEX CONCURRENTLY IF EXISTS conversations_snoozed_until_idx;

CREATE INDEX CONCURRENTLY conversations_snoozed_until_idx
    ON conversations (snoozed_until) WHERE status = 'SNOOZED';
