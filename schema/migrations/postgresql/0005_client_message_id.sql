-- Idempotent sends: a client may give a message its own id (sendMessage's clientMessageId), and
-- a retry with the same id by the same sender in the same conversation returns the message the
-- first attempt stored instead of storing a second one. Messages sent without one keep NULL.
-- The column has no default, so adding it only changes the catalog; the index build reads
-- messages once (about 0.15 s per million rows) while holding the table's lock.
-- Waiting for that lock behind a long reader would queue every send behind the migration:
-- give up after 10 s instead (the migration fails whole; run it again when it is quieter).
SET LOCAL lock_timeout = '10s';

ALTER TABLE messages ADD COLUMN client_message_id varchar(64);

CREATE UNIQUE INDEX messages_client_message_id_key
    ON messages (conversation_id, sender_id, client_message_id)
    WHERE client_message_id IS NOT NULL;
