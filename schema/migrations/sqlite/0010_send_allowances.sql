-- Each sender's allowance of messages (RATE_LIMIT_MESSAGES_PER_MINUTE): a token bucket, one
-- row per sender (repo/allowance.py). refilled_at is seconds since the epoch.
CREATE TABLE send_allowances (
    sender_id TEXT PRIMARY KEY CONSTRAINT send_allowances_sender_id_fkey
        REFERENCES profiles (id) ON DELETE CASCADE,
    tokens REAL NOT NULL,
    refilled_at REAL NOT NULL
);
