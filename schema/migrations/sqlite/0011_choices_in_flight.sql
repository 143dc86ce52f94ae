-- A first contact's choice of admin counts into choices_in_flight; the first contact's own
-- transaction moves it to conversation_count with the conversation it counts (see the
-- PostgreSQL migration of the same number).
ALTER TABLE admin_conversation_counts
    ADD COLUMN choices_in_flight INTEGER NOT NULL DEFAULT 0
        CONSTRAINT admin_conversation_counts_in_flight_not_negative
        CHECK (choices_in_flight >= 0);
