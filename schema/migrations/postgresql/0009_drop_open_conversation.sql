-- The contract step of the first contact in Python: since the release that stopped calling it,
-- no Helpline process runs helpline_open_conversation (migration 0004); the first contact is
-- repo/conversations.py's unit of work on both backends, and the database keeps only data,
-- constraints and the sign-up trigger. Apply after every process runs that release (README,
-- upgrade notes). bench/function_path.py installs its own copy from 0004's text to measure it.
DROP FUNCTION IF EXISTS helpline_open_conversation(uuid, text, text, text);
