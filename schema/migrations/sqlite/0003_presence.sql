-- Who holds a socket where: one row per (profile, server process) with its open sockets.
-- profiles.is_online is true while any live process holds a row; every process refreshes
-- seen_at of its own rows, and rows of a process that stopped refreshing (crashed) expire.
CREATE TABLE presence (
    profile_id TEXT NOT NULL CONSTRAINT presence_profile_id_fkey
        REFERENCES profiles (id) ON DELETE CASCADE CHECK (profile_id GLOB '[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]'),
    process_id TEXT NOT NULL CHECK (process_id GLOB '[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]'),
    sockets INTEGER NOT NULL CHECK (sockets > 0),
    seen_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (profile_id, process_id)
);

CREATE INDEX presence_process_id_idx ON presence (process_id);
CREATE INDEX presence_seen_at_idx ON presence (seen_at);
