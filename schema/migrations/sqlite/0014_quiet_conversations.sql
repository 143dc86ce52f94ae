-- The conversations auto-resolve looks at (see the PostgreSQL migration of the same number).
CREATE INDEX conversations_quiet_idx
    ON conversations (last_message_at) WHERE status = 'OPEN' AND waiting_since IS NULL;
