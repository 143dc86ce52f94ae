-- Helpline core schema (PostgreSQL). Names follow the post-mortem so its ops SQL runs unchanged.

CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text NOT NULL CONSTRAINT users_email_key UNIQUE,
    full_name text,
    profile_picture_url text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE profiles (
    id uuid PRIMARY KEY CONSTRAINT profiles_id_fkey REFERENCES users (id),
    name text NOT NULL,
    avatar_url text NOT NULL DEFAULT '',
    is_admin boolean NOT NULL DEFAULT false,
    is_online boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The admin is chosen as the oldest admin profile.
CREATE INDEX profiles_admins_idx ON profiles (created_at, id) WHERE is_admin;

CREATE TABLE conversations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id uuid NOT NULL,
    admin_id uuid NOT NULL CONSTRAINT conversations_admin_id_fkey REFERENCES profiles (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    last_message_at timestamptz,
    CONSTRAINT conversations_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES profiles (id),
    CONSTRAINT conversations_customer_id_key UNIQUE (customer_id)
);

CREATE INDEX conversations_admin_id_idx ON conversations (admin_id);

CREATE TABLE messages (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id uuid NOT NULL CONSTRAINT messages_conversation_id_fkey REFERENCES conversations (id),
    sender_id uuid NOT NULL CONSTRAINT messages_sender_id_fkey REFERENCES profiles (id),
    content text NOT NULL,
    -- clock_timestamp(): messages written in one transaction still get distinct, ordered times.
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX messages_conversation_id_created_at_id_idx ON messages (conversation_id, created_at, id);
CREATE INDEX messages_sender_id_idx ON messages (sender_id);

-- Prevention at the source: every new user gets a profile in the same transaction.
CREATE FUNCTION users_create_profile() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO profiles (id, name, avatar_url)
    VALUES (
        NEW.id,
        COALESCE(NULLIF(NEW.full_name, ''), NEW.email, 'User'),
        COALESCE(NEW.profile_picture_url, '')
    )
    ON CONFLICT (id) DO NOTHING;
    RETURN NEW;
END;
$$;

CREATE TRIGGER users_create_profile
AFTER INSERT ON users
FOR EACH ROW EXECUTE FUNCTION users_create_profile();
