-- Empty on purpose. Releases before the first contact ran in Python (repo/conversations.py)
-- installed a PL/pgSQL function, helpline_open_conversation, here; the application's
-- sequences belong in repo/, and the database keeps data, constraints and the sign-up trigger
-- only. A database migrated by such a release drops it in 0009; a new one never gets it. The
-- file stays so that migration ids keep their order (yoyo records 0004 as applied either way).
SELECT 1;
