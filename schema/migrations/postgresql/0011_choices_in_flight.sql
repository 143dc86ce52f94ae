-- A first contact's choice of admin is made, and counted, in a short transaction of its own
-- before the conversation exists (so first contacts queue on the choice only while it runs).
-- It now counts into choices_in_flight, and the first contact's own transaction moves it to
-- conversation_count with the conversation it counts: conversation_count always equals the
-- conversations an admin holds, which `helpline integrity check` compares exactly, while the
-- choice still balances over both. Adding a column with a constant default rewrites nothing.
ALTER TABLE admin_conversation_counts
    ADD COLUMN choices_in_flight integer NOT NULL DEFAULT 0
        CONSTRAINT admin_conversation_counts_in_flight_not_negative
        CHECK (choices_in_flight >= 0);
