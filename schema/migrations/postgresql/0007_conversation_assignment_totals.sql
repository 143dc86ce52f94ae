-- How many conversations were handed over for a reason that happens outside the server
-- processes (today only `helpline admin remove --reassign`: reason 'admin_removed'). The
-- servers count first contacts and reassignments in their own metrics; a command that runs
-- and exits has no metrics page, so it adds to this row in the transaction of each batch it
-- moves, and every server's /metrics reports the row as
-- helpline_conversations_assigned_total{reason="admin_removed"}.
CREATE TABLE conversation_assignment_totals (
    reason text PRIMARY KEY
        CONSTRAINT conversation_assignment_totals_reason_check CHECK (reason IN ('admin_removed')),
    total bigint NOT NULL DEFAULT 0
        CONSTRAINT conversation_assignment_totals_not_negative CHECK (total >= 0)
);
