-- A profile's text has caps (issue #23): the sign-up trigger copied users.full_name into the
-- profile whatever its length, and a 900,000-character name reached the inbox. The name is
-- cut to 200 characters of full_name (else 320 of email), and an avatar URL longer than 2048
-- characters gives no avatar (a cut URL would point elsewhere): sign-up never fails on long
-- text. repo/users.py (profile_name, profile_avatar_url) names a profile the same way, and
-- the test suite checks that both agree. `helpline db adopt` installs this definition.
CREATE OR REPLACE FUNCTION users_create_profile() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO profiles (id, name, avatar_url)
    VALUES (
        NEW.id,
        COALESCE(substr(NULLIF(NEW.full_name, ''), 1, 200), substr(NEW.email, 1, 320), 'User'),
        CASE WHEN length(NEW.profile_picture_url) <= 2048 THEN NEW.profile_picture_url ELSE '' END
    )
    ON CONFLICT (id) DO NOTHING;
    RETURN NEW;
END;
$$;
