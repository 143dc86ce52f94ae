-- A profile's text has caps (issue #23; the PostgreSQL migration says why): the name is cut to
-- 200 characters of full_name (else 320 of email), and an avatar URL longer than 2048
-- characters gives no avatar. SQLite cannot replace a trigger's body: it is dropped and made
-- again.
DROP TRIGGER users_create_profile;

CREATE TRIGGER users_create_profile
AFTER INSERT ON users
FOR EACH ROW
BEGIN
    INSERT INTO profiles (id, name, avatar_url)
    VALUES (
        NEW.id,
        COALESCE(substr(NULLIF(NEW.full_name, ''), 1, 200), substr(NEW.email, 1, 320), 'User'),
        CASE WHEN length(NEW.profile_picture_url) <= 2048 THEN NEW.profile_picture_url ELSE '' END
    )
    ON CONFLICT (id) DO NOTHING;
END;
