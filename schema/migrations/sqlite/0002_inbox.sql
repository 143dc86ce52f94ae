-- The admins' inbox: when each reader last read each conversation, and activity order.
CREATE TABLE conversation_reads (
    conversation_id TEXT NOT NULL CONSTRAINT conversation_reads_conversation_id_fkey
        REFERENCES conversations (id) CHECK (conversation_id GLOB '[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]'),
    reader_id TEXT NOT NULL CONSTRAINT conversation_reads_reader_id_fkey REFERENCES profiles (id)
        CHECK (reader_id GLOB '[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]'),
    last_read_at TEXT NOT NULL,
    PRIMARY KEY (conversation_id, reader_id)
);

CREATE INDEX conversations_activity_idx ON conversations (last_message_at DESC, id DESC);
