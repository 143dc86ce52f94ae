"""Each rule has one source; where a copy must stay (a migration is history), the copies agree.

Adoption installs the trigger and indexes the migrations define (read from them, the trigger's
function as the latest migration has it), and an adopted database ends with the same
constraints, indexes, triggers and functions as a freshly migrated one. The profile-naming
rule, caps included, gives a users row the same name and avatar through the sign-up trigger (a
migration's copy), the repair and the first contact (repo.users.profile_name and
profile_avatar_url).
"""

from __future__ import annotations

import psycopg2
import pytest

from gql.http.settings import Settings
from gql.ops.cli import main
from repo.adopt import Step, adopt
from repo.checks import PROFILE_TRIGGER
from repo.config import DatabaseSettings
from repo.database import database
from repo.integrity import repair_orphaned_conversations
from repo.migrate import migrate
from repo.models import Profile
from repo.users import MAX_AVATAR_URL, MAX_NAME_FROM_EMAIL, MAX_NAME_FROM_FULL_NAME
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
        migrate(DatabaseSettings(database_url=fresh))
        expected = catalog(fresh)

    adopted = catalog(seed_shaped_database)

    assert adopted == expected, (sorted(adopted - expected), sorted(expected - adopted))
    kinds = {kind for kind, *_ in expected}
    assert kinds == {"constraint", "index", "trigger", "function"}


def function_definition(url: str, name: str) -> str:
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT pg_get_functiondef(%s::regproc)", (name,))
        (definition,) = cursor.fetchone()
    conn.close()
    return str(definition)


def test_adoption_installs_the_sign_up_trigger_of_the_latest_migration(
    seed_shaped_database: str,
) -> None:
    installed: list[str] = []

    def report(step: Step) -> None:
        if step.name == f"add trigger {PROFILE_TRIGGER}":  # before later migrations are applied
            installed.append(function_definition(seed_shaped_database, PROFILE_TRIGGER))

    assert adopt(DatabaseSettings(database_url=seed_shaped_database), report=report).complete
    with new_postgres_database("helpline_fresh") as fresh:
        migrate(DatabaseSettings(database_url=fresh))
        expected = function_definition(fresh, PROFILE_TRIGGER)

    assert installed == [expected]
    with psycopg2.connect(seed_shaped_database) as conn, conn.cursor() as cursor:
        cursor.execute(
            "INSERT INTO users (email, full_name) VALUES ('long@example.com', %s) RETURNING id",
            ("n" * 900_000,),
        )
        cursor.execute("SELECT length(name) FROM profiles WHERE id = %s", cursor.fetchone())
        assert cursor.fetchone() == (MAX_NAME_FROM_FULL_NAME,)
    conn.close()


PICTURE = "https://avatars.example/grace.png"
LONG_PICTURE = "https://avatars.example/" + "p" * MAX_AVATAR_URL


@pytest.mark.parametrize(
    ("full_name", "email", "picture", "name", "avatar"),
    [
        ("Grace Hopper", "grace-{}@example.com", PICTURE, "Grace Hopper", PICTURE),
        ("", "anon-{}@example.com", None, "anon-{}@example.com", ""),
        (None, "anon-{}@example.com", None, "anon-{}@example.com", ""),
        ("G" * 900_000, "long-{}@example.com", None, "G" * MAX_NAME_FROM_FULL_NAME, ""),
        (None, "e" * 400 + "-{}@example.com", None, "e" * MAX_NAME_FROM_EMAIL, ""),
        ("Grace", "grace-{}@example.com", LONG_PICTURE, "Grace", ""),  # cut, it would mislead
    ],
    ids=["full-name", "empty-full-name", "no-full-name", "long-name", "long-email", "long-url"],
)
def test_a_users_row_gets_the_same_profile_every_way(
    db: Settings, full_name: str | None, email: str, picture: str | None, name: str, avatar: str
) -> None:
    admin = make_admin()

    def profile_of(customer: object) -> tuple[str, str]:
        with database.connection_context():
            profile = Profile.get_by_id(customer)
            return str(profile.name), str(profile.avatar_url)

    row = {"full_name": full_name, "profile_picture_url": picture}
    through_trigger = make_user(email=email.format(1), **row)
    through_repair = make_legacy_user(email=email.format(2), **row)
    make_orphaned_conversation(through_repair, admin)
    assert repair_orphaned_conversations(dry_run=False).profiles_created == 1
    through_first_contact = make_legacy_user(email=email.format(3), **row)
    assert first_contact(through_first_contact).profile_created

    assert [profile_of(c) for c in (through_trigger, through_repair, through_first_contact)] == [
        (name.format(n), avatar) for n in (1, 2, 3)
    ]


def test_a_migrated_database_defines_no_function_but_the_sign_up_trigger(
    postgres: Settings,
) -> None:
    """The application's sequences are Python in repo/; PostgreSQL keeps data, constraints and
    the sign-up trigger (migration 0009 dropped the first contact's former function)."""
    rows = database.execute_sql(
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = current_schema()"
    ).fetchall()
    assert [name for (name,) in rows] == ["users_create_profile"]
