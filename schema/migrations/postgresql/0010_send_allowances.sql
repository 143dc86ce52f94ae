-- Each sender's allowance of messages (RATE_LIMIT_MESSAGES_PER_MINUTE): a token bucket, one
-- row per sender, updated by the send's own statement (repo/allowance.py), so every process
-- sharing this database shares the bucket. UNLOGGED: written on every send without WAL, and
-- after a crash (or on a promoted standby, which never had it) every bucket starts full.
-- refilled_at is seconds since the epoch (the arithmetic is the same on both backends).
CREATE UNLOGGED TABLE send_allowances (
    sender_id uuid PRIMARY KEY CONSTRAINT send_allowances_sender_id_fkey
        REFERENCES profiles (id) ON DELETE CASCADE,
    tokens double precision NOT NULL,
    refilled_at double precision NOT NULL
);
