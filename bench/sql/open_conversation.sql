-- The benchmark's copy of the first contact as a PL/pgSQL function (what migration 0004
-- installed until the release that ran it in Python, repo/conversations.py): bench/
-- function_path.py installs it in the benchmark's own database, to compare the two paths.
-- Helpline's migrations define no function but the sign-up trigger's.
--
-- A customer's first contact, as one call: the transaction of
-- repo/conversations.py get_or_create_admin_conversation, statement for statement, run by
-- PostgreSQL itself (one round trip instead of about ten). SQLite runs the same steps in
-- Python; the test suite runs both against the same expectations.
--
-- Fails with SQLSTATE HL001 when the customer has no users row (and none is given), and
-- HL002 when no admin can take the conversation; nothing is written then.
CREATE OR REPLACE FUNCTION bench_open_conversation(
    p_customer uuid,
    p_email text,          -- with a verified sign-up token: create the users row if missing
    p_full_name text,
    p_welcome text,
    OUT out_conversation uuid,
    OUT out_created boolean,
    OUT out_profile_created boolean
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_admin uuid;
    v_message uuid := gen_random_uuid();
    v_rows integer;
    v_user_created boolean := false;
BEGIN
    IF p_email IS NOT NULL THEN
        INSERT INTO users (id, email, full_name) VALUES (p_customer, p_email, p_full_name)
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        v_user_created := v_rows > 0;
    END IF;
    INSERT INTO profiles (id, name, avatar_url)
    SELECT u.id, COALESCE(NULLIF(u.full_name, ''), u.email, 'User'),
           COALESCE(u.profile_picture_url, '')
    FROM users u WHERE u.id = p_customer
    ON CONFLICT (id) DO NOTHING;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    out_profile_created := v_rows > 0 OR v_user_created;

    -- Racing first calls serialize here. Each statement below takes a fresh snapshot
    -- (READ COMMITTED), so a conversation a racer committed meanwhile is seen.
    PERFORM 1 FROM profiles WHERE id = p_customer FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'customer % not found: no users row', p_customer USING ERRCODE = 'HL001';
    END IF;
    SELECT c.id INTO out_conversation FROM conversations c WHERE c.customer_id = p_customer;
    IF FOUND THEN
        out_created := false;
        RETURN;
    END IF;

    SELECT p.id INTO v_admin FROM profiles p
    WHERE p.is_admin AND p.id <> p_customer
    ORDER BY p.created_at, p.id LIMIT 1;
    IF v_admin IS NULL THEN
        RAISE EXCEPTION 'no admin is available to take the conversation' USING ERRCODE = 'HL002';
    END IF;
    out_conversation := gen_random_uuid();
    INSERT INTO conversations (id, customer_id, admin_id)
    VALUES (out_conversation, p_customer, v_admin);
    -- The welcome message, as repo/messages.py stores every message.
    WITH stored AS (
        INSERT INTO messages (id, conversation_id, sender_id, content, created_at)
        SELECT v_message, c.id, v_admin, p_welcome,
               GREATEST(clock_timestamp(), c.last_message_at + interval '1 microsecond')
        FROM conversations c WHERE c.id = out_conversation
        RETURNING messages.conversation_id AS stored_conversation, messages.created_at AS stored_at
    )
    UPDATE conversations
    SET last_message_at = stored.stored_at, updated_at = stored.stored_at
    FROM stored WHERE conversations.id = stored.stored_conversation;
    PERFORM pg_notify('helpline_messages', out_conversation::text || ':' || v_message::text);
    out_created := true;
END
$$;
