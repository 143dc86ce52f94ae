"""REPLICA_DATABASE_URL: the integrity reads go to the replica, repair writes the primary.

A second database stands in for the replica. Its rows differ from the primary's on purpose
(a real replica's would not), so every answer shows which database it came from.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import psycopg2
import pytest
from starlette.testclient import TestClient

from gql.http.app import create_app
from gql.http.settings import Settings
from gql.ops.cli import main
from repo.checks import VIOLATION, run_checks
from repo.config import DatabaseSettings
from repo.database import bound_settings, open_database
from repo.ids import ConversationId
from repo.integrity import (
    count_orphaned_conversations,
    find_orphaned_conversations,
    profile_coverage,
    repair_orphaned_conversations,
)
from repo.migrate import migrate
from tests.conftest import TABLES, new_postgres_database
from tests.e2e.conftest import service_token
from tests.factories import first_contact, make_admin, make_orphaned_conversation, make_user

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

INTEGRITY = "{ integrity { orphanedConversationCount orphanedConversations(first: 5) { id } } }"


@pytest.fixture(scope="module")
def replica_url(database_url: str) -> Iterator[str]:
    """A migrated database of its own, standing in for a replica of the primary."""
    with new_postgres_database("helpline_replica") as url:
        migrate(DatabaseSettings(database_url=url))
        yield url


@pytest.fixture
def replica_orphan(db: Settings, replica_url: str) -> Iterator[ConversationId]:
    """An orphaned conversation that only the replica has; the primary has a sound one."""
    with bound_to(replica_url):
        orphan = make_orphaned_conversation(make_user(), make_admin())
    make_admin()
    first_contact(make_user())
    try:
        yield orphan
    finally:
        with psycopg2.connect(replica_url) as conn, conn.cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(TABLES)}")
        conn.close()


@contextmanager
def bound_to(url: str) -> Iterator[None]:
    """The repository on ``url`` alone for a while, then back where it was."""
    before = bound_settings()
    open_database(replace(before, database_url=url, replica_database_url=None))
    try:
        yield
    finally:
        open_database(before)


@pytest.fixture
def with_replica(db: Settings, replica_url: str) -> Settings:
    settings = db.replaced(replica_database_url=replica_url)
    open_database(settings.database)
    return settings


@pytest.mark.usefixtures("with_replica")
def test_integrity_reads_come_from_the_replica(replica_orphan: ConversationId) -> None:
    checks = {check.name: check for check in run_checks()}

    assert count_orphaned_conversations() == 1
    assert [o.id for o in find_orphaned_conversations()] == [replica_orphan]
    assert profile_coverage().orphaned_conversations == 1
    assert checks["orphaned_conversations"].status == VIOLATION
    assert checks["orphaned_conversations"].sample == [str(replica_orphan)]


def test_repair_writes_the_primary_and_leaves_the_replica_alone(
    db: Settings, replica_orphan: ConversationId, with_replica: Settings
) -> None:
    primary_orphan = make_orphaned_conversation(make_user(), make_admin())

    report = repair_orphaned_conversations(dry_run=False)

    assert (report.profiles_created, report.orphaned_conversations_before) == (1, 1)
    assert report.orphaned_conversations_after == 0
    assert [o.id for o in find_orphaned_conversations()] == [replica_orphan]  # the replica's
    with bound_to(db.database.database_url):
        assert count_orphaned_conversations() == 0, f"{primary_orphan} was not healed"


def test_the_integrity_query_and_command_read_the_replica(
    with_replica: Settings,
    replica_orphan: ConversationId,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with TestClient(create_app(with_replica)) as http:
        response = http.post(
            "/graphql",
            json={"query": INTEGRITY},
            headers={"authorization": f"Bearer {service_token()}"},
        )
    monkeypatch.setenv("DATABASE_URL", with_replica.database.database_url)
    monkeypatch.setenv("REPLICA_DATABASE_URL", with_replica.database.replica_database_url or "")
    code = main(["integrity", "check", "--json"])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}

    assert response.json()["data"]["integrity"] == {
        "orphanedConversationCount": 1,
        "orphanedConversations": [{"id": str(replica_orphan)}],
    }
    assert code == 1
    assert checks["orphaned_conversations"]["sample"] == [str(replica_orphan)]
