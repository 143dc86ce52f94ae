"""The `helpline` command against real databases: exit codes, JSON, repair, admins, adoption."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from uuid import UUID, uuid4

import psycopg2
import pytest

from gql.http.settings import Settings
from gql.ops.cli import main
from repo import admins, conversations
from repo.database import close_database, database, open_database
from repo.ids import ProfileId
from repo.messages import send_message
from repo.migrate import MIGRATIONS_DIR
from repo.models import AdminConversationCount, Conversation, Profile
from tests.conftest import new_postgres_database
from tests.factories import (
    count_rows,
    first_contact,
    make_admin,
    make_legacy_user,
    make_orphaned_conversation,
    make_user,
)

OPS_SQL = Path(__file__).resolve().parents[2] / "schema" / "ops"


def helpline(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


@pytest.fixture
def env(db: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DATABASE_URL", db.database.database_url)
    return db


def checks_by_name(output: str) -> dict[str, dict[str, object]]:
    return {c["name"]: c for c in json.loads(output)["checks"]}


def test_a_sound_database_passes_every_check(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    make_admin()
    first_contact(make_user())

    code, out = helpline("integrity", "check", "--json", capsys=capsys)

    assert code == 0
    assert json.loads(out)["ok"] is True
    assert {c["status"] for c in checks_by_name(out).values()} == {"ok"}


def test_orphans_fail_the_check_with_their_ids(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    orphan = make_orphaned_conversation(make_user(), make_admin())

    code, out = helpline("integrity", "check", "--json", capsys=capsys)

    assert code == 1
    found = checks_by_name(out)["orphaned_conversations"]
    assert (found["status"], found["count"], found["sample"]) == ("violation", 1, [str(orphan)])


def test_users_without_profile_warn_unless_strict(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    make_legacy_user()

    code, out = helpline("integrity", "check", capsys=capsys)
    assert code == 0
    assert "WARNING   users_without_profile: 1 user(s)" in out

    code, out = helpline("integrity", "check", "--strict", capsys=capsys)
    assert code == 1
    assert "VIOLATION users_without_profile" in out


def test_a_conversation_held_by_a_non_admin_is_a_violation(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = make_admin()
    first_contact(make_user())
    with database.connection_context():
        Profile.update(is_admin=False).where(Profile.id == admin).execute()

    code, out = helpline("integrity", "check", "--json", capsys=capsys)

    assert code == 1
    assert checks_by_name(out)["conversations_with_non_admin_admin"]["count"] == 1


def test_a_conversation_whose_admin_is_its_customer_is_a_violation(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    make_admin()
    conversation = first_contact(make_user()).conversation
    with database.connection_context():  # written around Helpline, which refuses it
        Profile.update(is_admin=True).where(Profile.id == conversation.customer.id).execute()
        Conversation.update(admin=conversation.customer.id).where(
            Conversation.id == conversation.id
        ).execute()

    code, out = helpline("integrity", "check", "--json", capsys=capsys)

    assert code == 1
    found = checks_by_name(out)["conversations_whose_admin_is_their_customer"]
    assert (found["status"], found["count"], found["sample"]) == (
        "violation",
        1,
        [str(conversation.id)],
    )


def test_drifted_counts_and_stranded_choices_are_reported_then_repaired(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = make_admin()
    for _ in range(2):
        first_contact(make_user())
    with database.connection_context():  # as a hand-made fix or an older release left it
        AdminConversationCount.update(conversation_count=5).where(
            AdminConversationCount.admin == admin
        ).execute()
        conversations.choose_admin(make_user())  # a first contact killed after its choice

    code, out = helpline("integrity", "check", "--json", capsys=capsys)
    assert code == 1
    checks = checks_by_name(out)
    drift = checks["admins_whose_count_differs"]
    assert (drift["status"], drift["count"]) == ("violation", 1)
    assert drift["sample"] == [f"{admin} counted 5 (2 open), holds 2 (2 open)"]
    stranded = checks["choices_in_flight"]
    assert (stranded["status"], stranded["count"]) == ("warning", 1)

    code, out = helpline("integrity", "repair", capsys=capsys)
    assert code == 1  # a dry run with work to do
    assert "admins whose conversation count differs: 1 (would recount)" in out

    code, out = helpline("integrity", "repair", "--apply", capsys=capsys)
    assert code == 0
    assert "admins whose conversation count differs: 1 before, 0 after" in out

    code, out = helpline("integrity", "check", "--json", capsys=capsys)
    assert code == 0
    checks = checks_by_name(out)
    assert checks["admins_whose_count_differs"]["count"] == 0
    assert checks["choices_in_flight"]["count"] == 0


def test_a_check_that_cannot_reach_the_database_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:9/nowhere")
    assert main(["integrity", "check"]) == 2
    monkeypatch.setenv("DATABASE_URL", "mysql://root@localhost/chat")
    assert main(["integrity", "check"]) == 2
    assert "DATABASE_URL: unsupported scheme 'mysql'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [
        ["integrity", "check"],
        ["integrity", "check", "--json"],
        ["integrity", "repair"],
        ["integrity", "repair", "--apply"],
        ["db", "migrate"],
        ["db", "adopt"],
        ["admin", "add", "ada@example.com"],
        ["admin", "list"],
        ["admin", "remove", "ada@example.com"],
        ["admin", "remove", "ada@example.com", "--reassign"],
        ["demo", "seed"],
    ],
    ids=" ".join,
)
def test_every_command_exits_2_in_one_line_when_the_database_is_unreachable(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:9/nowhere")
    monkeypatch.setenv("DB_CONNECT_TIMEOUT_SECONDS", "2")

    assert main(command) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("helpline: ") and "unavailable" in line, line
    assert captured.out == ""


def test_repair_is_a_dry_run_until_applied(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = make_admin()
    for _ in range(3):
        make_orphaned_conversation(make_user(), admin)
    lost = make_orphaned_conversation(uuid4(), admin)

    code, out = helpline("integrity", "repair", capsys=capsys)
    assert "DRY RUN: would create 3 profile(s)" in out
    assert code == 1  # there is work to do
    assert count_rows("profiles") == 1

    code, out = helpline("integrity", "repair", "--apply", "--batch-size", "2", capsys=capsys)
    assert "created 3 profile(s)" in out
    assert "orphaned conversations: 4 before, 1 after" in out
    assert f"cannot heal {lost}" in out
    assert code == 1  # an orphan is left
    assert count_rows("conversations") == 4


def test_admin_add_promotes_a_user_and_creates_a_missing_profile(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    legacy = make_legacy_user(email="ops@example.com", full_name="Olga Ops")

    code, out = helpline("admin", "add", "ops@example.com", capsys=capsys)

    assert code == 0 and "Olga Ops" in out
    with database.connection_context():
        assert Profile.get_by_id(legacy).is_admin
    assert helpline("admin", "add", "nobody@example.com", capsys=capsys)[0] == 1


def test_db_migrate_is_idempotent(env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert helpline("db", "migrate", capsys=capsys) == (0, "migrations: up to date\n")


def _legacy_rows(url: str, *, lost_customer: bool) -> dict[str, UUID]:
    """Orphans with users rows, a customer with two conversations, and maybe a lost customer."""
    ids = {name: uuid4() for name in ("admin", "orphan", "twice", "c1", "c2", "lost", "lost_conv")}
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        for name in ("admin", "orphan", "twice"):
            cur.execute(
                "INSERT INTO users (id, email) VALUES (%s, %s)",
                (str(ids[name]), f"{name}@example.com"),
            )
        cur.execute(
            "INSERT INTO profiles (id, name, is_admin) VALUES (%s, 'Ada', true), "
            "(%s, 'Twice', false)",
            (str(ids["admin"]), str(ids["twice"])),
        )
        cur.execute(
            "INSERT INTO conversations (id, customer_id, admin_id) VALUES (%s, %s, %s)",
            (str(uuid4()), str(ids["orphan"]), str(ids["admin"])),
        )
        for conv, offset in (("c1", "2 hours"), ("c2", "1 hour")):
            cur.execute(
                "INSERT INTO conversations (id, customer_id, admin_id, created_at) "
                "VALUES (%s, %s, %s, now() - %s::interval)",
                (str(ids[conv]), str(ids["twice"]), str(ids["admin"]), offset),
            )
            cur.execute(
                "INSERT INTO messages (conversation_id, sender_id, content) VALUES (%s, %s, %s)",
                (str(ids[conv]), str(ids["twice"]), f"in {conv}"),
            )
        if lost_customer:
            cur.execute(
                "INSERT INTO conversations (id, customer_id, admin_id) VALUES (%s, %s, %s)",
                (str(ids["lost_conv"]), str(ids["lost"]), str(ids["admin"])),
            )
    return ids


def _seed_orphan_rows(url: str) -> int:
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute((OPS_SQL / "orphaned_conversations.sql").read_text())
        return len(cursor.fetchall())


def test_adoption_ends_validated_with_no_orphans(
    seed_shaped_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _legacy_rows(seed_shaped_database, lost_customer=False)

    code, out = helpline("db", "adopt", capsys=capsys)

    assert code == 0, out
    assert "DONE     merge duplicate conversations: customer " + str(ids["twice"]) in out
    assert _seed_orphan_rows(seed_shaped_database) == 0
    code, out = helpline("integrity", "check", "--json", capsys=capsys)
    assert code == 0, out
    with psycopg2.connect(seed_shaped_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT conversation_id::text FROM messages ORDER BY created_at")
        assert [r[0] for r in cur.fetchall()] == [str(ids["c1"]), str(ids["c1"])]
    settings = Settings.of(database_url=seed_shaped_database)
    open_database(settings.database)
    try:
        conversation = first_contact(ids["twice"]).conversation  # type: ignore[arg-type]
        assert conversation.id == ids["c1"]
        sent = [  # later migrations applied too: retries with a client message id work
            send_message(
                conversation.id, "again", sender_id=ProfileId(ids["twice"]), client_message_id="k"
            )
            for _ in range(2)
        ]
        assert sent[0] == sent[1]
    finally:
        close_database()

    code, out = helpline("db", "adopt", capsys=capsys)
    assert code == 0
    assert all(line.startswith(("ALREADY", "adopted")) for line in out.splitlines()), out


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # db adopt's only one
def test_adopting_again_merges_duplicates_and_keeps_the_admins_counts_exact(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """A database of this release that lost its one-conversation constraint (restored from an
    old dump, say) and got a second conversation: adoption merges it, counts and all."""
    admin = make_admin()
    customer = make_user()
    first_contact(customer)
    with database.connection_context():
        database.execute_sql(
            "ALTER TABLE conversations DROP CONSTRAINT conversations_customer_id_key"
        )
        Conversation.insert(customer=customer, admin=admin).execute()
        AdminConversationCount.update(  # counted as this release counts it: open
            conversation_count=AdminConversationCount.conversation_count + 1,
            open_count=AdminConversationCount.open_count + 1,
        ).where(AdminConversationCount.admin == admin).execute()

    code, out = helpline("db", "adopt", capsys=capsys)

    assert code == 0, out
    assert "DONE     merge duplicate conversations" in out
    code, out = helpline("integrity", "check", "--json", capsys=capsys)
    assert code == 0, out
    assert checks_by_name(out)["admins_whose_count_differs"]["count"] == 0


def test_adoption_stops_before_validating_when_an_orphan_has_no_user(
    seed_shaped_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _legacy_rows(seed_shaped_database, lost_customer=True)

    code, out = helpline("db", "adopt", capsys=capsys)

    assert code == 1
    assert (
        "STOPPED  validate conversations_customer_id_fkey: 1 orphan(s) whose customer has no "
        f"users row remain: {ids['lost_conv']}"
    ) in out
    with psycopg2.connect(seed_shaped_database) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT conname, convalidated FROM pg_constraint "
            "WHERE conrelid = 'conversations'::regclass AND contype IN ('f', 'u') "
            "AND conname LIKE 'conversations_customer%%'"
        )
        assert cur.fetchall() == [("conversations_customer_id_fkey", False)]
        cur.execute("SELECT count(*) FROM conversations")
        assert cur.fetchone() == (4,)  # duplicates not merged, nothing deleted
        cur.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'users_create_profile'")
        assert cur.fetchone() == (0,)


def test_commands_on_a_database_without_the_schema_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{missing}")
    assert main(["integrity", "check"]) == 2
    assert not missing.exists()  # a check never creates a database
    with new_postgres_database("helpline_empty") as url:
        monkeypatch.setenv("DATABASE_URL", url)
        for command in (["integrity", "check"], ["integrity", "repair"], ["admin", "add", "a@b"]):
            assert main(command) == 2, command
    err = capsys.readouterr().err
    assert "run helpline db migrate" in err and "is the schema there?" in err


def test_db_migrate_on_a_seed_shaped_database_points_to_adopt(
    seed_shaped_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "migrate"]) == 2
    assert "helpline db adopt" in capsys.readouterr().err


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # a settings guard
def test_serve_in_production_without_metrics_protection_exits_2_in_one_line(
    env: Settings,
) -> None:
    """A subprocess with a deadline: should the guard break, the server starts and serves, and
    the test fails within seconds instead of serving until the suite's timeout."""
    environment = {
        k: v for k, v in os.environ.items() if k not in ("METRICS_TOKEN", "METRICS_UNPROTECTED")
    }
    environment |= {
        "APP_ENV": "production",
        "JWT_SECRET": "s" * 32,
        "DATABASE_URL": env.database.database_url,
    }
    try:
        finished = subprocess.run(
            [str(Path(sys.executable).parent / "helpline"), "serve", "--port", "0"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("helpline serve started instead of refusing to")
    assert finished.returncode == 2
    (line,) = finished.stderr.strip().splitlines()
    assert "METRICS_TOKEN" in line and "METRICS_UNPROTECTED" in line


def test_db_migrate_prints_one_line_per_migration_and_nothing_of_its_library(
    tmp_path: Path,
) -> None:
    sqlite_ids = sorted(p.stem for p in (MIGRATIONS_DIR / "sqlite").glob("*.sql"))
    postgres_ids = sorted(p.stem for p in (MIGRATIONS_DIR / "postgresql").glob("*.sql"))
    with new_postgres_database("helpline_fresh") as postgres_url:
        for url, ids in (
            (f"sqlite:///{tmp_path / 'fresh.db'}", sqlite_ids),
            (postgres_url, postgres_ids),
        ):
            env = {**os.environ, "DATABASE_URL": url}
            first, again = (
                subprocess.run(
                    [sys.executable, "-m", "gql.ops.cli", "db", "migrate"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=True,
                )
                for _ in range(2)
            )
            assert (first.stdout, first.stderr) == (
                "".join(f"applied migration {i}\n" for i in ids),
                "",
            )
            assert (again.stdout, again.stderr) == ("migrations: up to date\n", "")
    seeded = subprocess.run(  # what `make run` runs first, on a new database
        [str(Path(sys.executable).parent / "helpline"), "demo", "seed"],
        env={**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = seeded.stdout.splitlines()
    assert lines[: len(sqlite_ids)] == [f"applied migration {i}" for i in sqlite_ids]
    assert lines[len(sqlite_ids)] == "demo data: 3 user(s) added"
    assert seeded.stderr == ""


def test_admin_list_shows_the_team_with_presence_and_counts(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    first = make_admin("First")
    second = make_user(email="second@example.com")
    assert helpline("admin", "add", "second@example.com", capsys=capsys)[0] == 0
    with database.connection_context():  # a second later (SQLite keeps milliseconds)
        created = Profile.get_by_id(first).created_at
        Profile.update(created_at=created + timedelta(seconds=1)).where(
            Profile.id == second
        ).execute()
    first_contact(make_user())

    code, out = helpline("admin", "list", "--json", capsys=capsys)

    assert code == 0
    team = json.loads(out)["admins"]
    assert [(a["email"], a["assignedConversationCount"], a["online"]) for a in team] == [
        (f"{first}@example.com", 1, False),
        ("second@example.com", 0, False),
    ]
    code, out = helpline("admin", "list", capsys=capsys)
    assert code == 0 and out.splitlines()[-1] == "2 admin(s)"


def test_admin_remove_refuses_while_they_hold_conversations_then_hands_them_over(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    leaving = make_admin("Leaving")
    staying = make_admin("Staying")
    chats = [first_contact(make_user()).conversation for _ in range(5)]
    email = f"{leaving}@example.com"
    held = sum(c.admin.id == leaving for c in chats)

    assert main(["admin", "remove", email]) == 1
    assert f"holds {held} conversation(s)" in capsys.readouterr().err

    def interrupted(moved: int) -> None:
        raise KeyboardInterrupt  # the operator's Ctrl-C after the first batch

    open_database(env.database)
    try:
        with pytest.raises(KeyboardInterrupt):
            admins.remove_admin(email, reassign=True, batch_size=1, progress=interrupted)
    finally:
        close_database()
    assert sum(conversations_of_admin(leaving)) == held - 1  # one batch committed
    code = main(["admin", "remove", email, "--reassign", "--batch-size", "2"])  # run again

    assert code == 0
    assert sum(conversations_of_admin(leaving)) == 0
    assert sum(conversations_of_admin(staying)) == 5
    with database.connection_context():
        assert not Profile.get_by_id(leaving).is_admin
    assert main(["admin", "remove", email]) == 0  # once more: nothing to do


def conversations_of_admin(admin: UUID) -> list[int]:
    with database.connection_context():
        return [1 for _ in Conversation.select().where(Conversation.admin == admin)]


def test_admin_remove_refuses_the_last_admin_and_an_unknown_user(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    only = make_admin("Only")

    assert main(["admin", "remove", f"{only}@example.com", "--reassign"]) == 1
    assert "last admin" in capsys.readouterr().err
    assert main(["admin", "remove", "nobody@example.com"]) == 1
    with database.connection_context():
        assert Profile.get_by_id(only).is_admin
