"""Each rule has one source; where a copy must stay (a migration is history), the copies agree.

Adoption installs the trigger and indexes the core migration defines (read from it), and an
adopted database ends with the same constraints, indexes, triggers and functions as a freshly
migrated one. The profile-naming rule gives a users row the same name through the sign-up
trigger (a migration's copy), the repair and the first contact (repo.users.profile_name).
"""

from __future__ import annotations

import psycopg2
import pytest

from gql.ops.cli import main
from repo.config import Settings
from repo.database import database
from repo.integrity import repair_orphaned_conversations
from repo.migrate import migrate
from repo.models import Profile
from tests.conftest import new_postgres_database
from tests.factories import (
    first_contact,
    make_admin,
    make_legacy_user,
    make_orphaned_conversation,
    make_user,
)

CATALOG = """
SELECT 'constraint', conrelid::regclass::text, conname, pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT 'index', tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'trigger', tgrelid::regclass::text, tgname, pg_get_triggerdef(oid)
FROM pg_trigger WHERE NOT tgisinternal
UNION ALL
SELECT 'function', '', proname, pg_get_functiondef(oid)
FROM pg_proc WHERE pronamespace = 'public'::regnamespace
"""


def catalog(url: str) -> set[tuple[str, str, str, str]]:
    """Helpline's constraints, indexes, triggers and functions (not the migration tool's)."""
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(CATALOG)
        rows = {tuple(row) for row in cursor.fetchall()}
    conn.close()
    return {row for row in rows if "yoyo" not in row[1] and "yoyo" not in row[2]}


def test_an_adopted_database_has_what_a_migrated_one_has(
    seed_shaped_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "adopt"]) == 0, capsys.readouterr()
    with new_postgres_database("helpline_fresh") as fresh:
        migrate(Settings(database_url=fresh))
        expected = catalog(fresh)

    adopted = catalog(seed_shaped_database)

    assert adopted == expected, (sorted(adopted - expected), sorted(expected - adopted))
    kinds = {kind for kind, *_ in expected}
    assert kinds == {"constraint", "index", "trigger", "function"}


@pytest.mark.parametrize(
    ("full_name", "name"),
    [("Grace Hopper", "Grace Hopper"), ("", "{email}"), (None, "{email}")],
    ids=["full-name", "empty-full-name", "no-full-name"],
)
def test_a_users_row_gets_the_same_profile_name_every_way(
    db: Settings, full_name: str | None, name: str
) -> None:
    admin = make_admin()
    email = f"{full_name or 'anon'}-{{}}@example.com"

    def profile_name(customer: object) -> str:
        with database.connection_context():
            return str(Profile.get_by_id(customer).name)

    through_trigger = make_user(email=email.format(1), full_name=full_name)
    through_repair = make_legacy_user(email=email.format(2), full_name=full_name)
    make_orphaned_conversation(through_repair, admin)
    assert repair_orphaned_conversations(dry_run=False).profiles_created == 1
    through_first_contact = make_legacy_user(email=email.format(3), full_name=full_name)
    assert first_contact(through_first_contact).profile_created

    assert [profile_name(c) for c in (through_trigger, through_repair, through_first_contact)] == [
        name.format(email=email.format(n)) for n in (1, 2, 3)
    ]
