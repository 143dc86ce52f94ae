-- The admins' inbox: when each reader last read each conversation, and activity order.
CREATE TABLE conversation_reads (
    conversation_id uuid NOT NULL CONSTRAINT conversation_reads_conversation_id_fkey
        REFERENCES conversations (id),
    reader_id uuid NOT NULL CONSTRAINT conversation_reads_reader_id_fkey REFERENCES profiles (id),
    last_read_at timestamptz NOT NULL,
    PRIMARY KEY (conversation_id, reader_id)
);

CREATE INDEX conversations_activity_idx ON conversations (last_message_at DESC, id DESC);
