-- Who holds a socket where: one row per (profile, server process) with its open sockets.
-- profiles.is_online is true while any live process holds a row; every process refreshes
-- seen_at of its own rows, and rows of a process that stopped refreshing (crashed) expire.
CREATE TABLE presence (
    profile_id uuid NOT NULL CONSTRAINT presence_profile_id_fkey
        REFERENCES profiles (id) ON DELETE CASCADE,
    process_id uuid NOT NULL,
    sockets integer NOT NULL CHECK (sockets > 0),
    seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (profile_id, process_id)
);

CREATE INDEX presence_process_id_idx ON presence (process_id);
CREATE INDEX presence_seen_at_idx ON presence (seen_at);
