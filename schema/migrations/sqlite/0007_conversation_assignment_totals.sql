-- Conversations handed over outside the server processes, by reason (see the PostgreSQL
-- migration): reported by /metrics as helpline_conversations_assigned_total.
CREATE TABLE conversation_assignment_totals (
    reason TEXT NOT NULL PRIMARY KEY
        CONSTRAINT conversation_assignment_totals_reason_check CHECK (reason IN ('admin_removed')),
    total INTEGER NOT NULL DEFAULT 0
        CONSTRAINT conversation_assignment_totals_not_negative CHECK (total >= 0)
);
