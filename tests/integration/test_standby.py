"""A real physical standby (private clusters, tests/clusters.py): REPLICA_DATABASE_URL reads
from it, its lag is measured, reads fall back to the primary when it is gone, and a standby
named as DATABASE_URL is never taken for a primary."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from gql.http.app import create_app
from gql.http.settings import Settings
from repo.database import (
    close_database,
    open_database,
)
from repo.errors import DatabaseUnavailable
from repo.integrity import count_orphaned_conversations, repair_orphaned_conversations
from repo.units import replica_lag_seconds
from tests.clusters import Pair
from tests.conftest import TEST_JWT_SECRET, empty_tables
from tests.e2e.conftest import service_token, user_token
from tests.e2e.test_observability import metric
from tests.factories import first_contact, make_admin, make_orphaned_conversation, make_user

pytestmark = pytest.mark.timeout(120)
SETTLED_S = 15  # how long the standby may take to show what the primary committed


def until(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + SETTLED_S
    while not (value := check()):
        assert time.monotonic() < deadline, f"{what}: not within {SETTLED_S} s"
        time.sleep(0.05)
    return value


@pytest.fixture
def with_standby(standby_pair: Pair) -> Iterator[Settings]:
    """The repository on the primary, its integrity reads on the standby."""
    settings = Settings.of(
        database_url=standby_pair.primary.url("helpline"),
        replica_database_url=standby_pair.standby.url("helpline"),
        jwt_secret=TEST_JWT_SECRET,
        db_connect_timeout_s=2,
    )
    open_database(settings.database)
    try:
        yield settings
    finally:
        standby_pair.standby.execute("SELECT pg_wal_replay_resume()")
        empty_tables()
        close_database()


def test_integrity_reads_come_from_the_standby_and_its_lag_is_measured(
    standby_pair: Pair, with_standby: Settings
) -> None:
    orphan = make_orphaned_conversation(make_user(), make_admin())
    until(lambda: count_orphaned_conversations() == 1, "the standby replays the orphan")
    until(lambda: replica_lag_seconds() == 0, "an idle standby shows no lag")
    standby_pair.standby.execute("SELECT pg_wal_replay_pause()")

    report = repair_orphaned_conversations(dry_run=False)  # the primary, always
    time.sleep(0.3)

    assert (report.orphaned_conversations_before, report.orphaned_conversations_after) == (1, 0)
    assert count_orphaned_conversations() == 1, f"{orphan}: read from the paused standby"
    lag = replica_lag_seconds()
    assert lag is not None and lag >= 0.3  # it trails what it received
    standby_pair.standby.execute("SELECT pg_wal_replay_resume()")
    until(lambda: count_orphaned_conversations() == 0, "the standby replays the repair")
    until(lambda: replica_lag_seconds() == 0, "caught up: no lag")


def test_a_standby_that_is_gone_sends_integrity_reads_to_the_primary(
    standby_pair: Pair, with_standby: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    make_orphaned_conversation(make_user(), make_admin())
    standby_pair.standby.ctl("stop", "-m", "fast")
    try:
        with TestClient(create_app(with_standby)) as http:
            before = metric(http.get("/metrics").text, "helpline_replica_fallbacks_total")
            with caplog.at_level(logging.WARNING, logger="repo.units"):
                answer = http.post(
                    "/graphql",
                    json={"query": "{ integrity { orphanedConversationCount } }"},
                    headers={"authorization": f"Bearer {service_token()}"},
                )
            page = http.get("/metrics").text
            with pytest.raises(DatabaseUnavailable):
                replica_lag_seconds()  # measured on the standby or not at all
    finally:
        standby_pair.standby.start()

    assert answer.json() == {"data": {"integrity": {"orphanedConversationCount": 1}}}
    assert any("reading the primary" in r.getMessage() for r in caplog.records)
    assert metric(page, "helpline_replica_fallbacks_total") >= before + 1
    assert math.isnan(metric(page, "helpline_replica_lag_seconds"))


def test_a_standby_is_never_taken_for_a_primary(standby_pair: Pair) -> None:
    primary = Settings.of(database_url=standby_pair.primary.url("helpline"))
    standby_only = Settings.of(
        database_url=standby_pair.standby.url("helpline"), jwt_secret=TEST_JWT_SECRET
    )
    open_database(primary.database)
    make_admin()
    customer = make_user()
    until(
        lambda: standby_pair.standby.execute("SELECT count(*) FROM profiles", "helpline") == [(2,)],
        "the standby has the users",
    )
    try:
        with TestClient(create_app(standby_only)) as http:
            ready = http.get("/ready")
            before = app_backends(standby_pair)
            opened = http.post(
                "/graphql",
                json={"query": "mutation { adminConversation { created } }"},
                headers={"authorization": f"Bearer {user_token(customer)}"},
            )
            closed = until(  # its backend ends a moment after the connection closes
                lambda: app_backends(standby_pair) == before - 1, "the connection closes"
            )
    finally:
        open_database(primary.database)
        empty_tables()
        close_database()

    assert (ready.status_code, ready.headers["retry-after"]) == (503, "1")  # SELECT 1 would pass
    assert opened.status_code == 503 and opened.headers["retry-after"] == "1"
    assert [e["extensions"]["code"] for e in opened.json()["errors"]] == ["SERVICE_UNAVAILABLE"]
    assert closed and before >= 1  # the connection that met the read-only server was closed


def app_backends(pair: Pair) -> int:
    """The app's connections to the standby, as the standby counts them."""
    rows = pair.standby.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'helpline'"
    )
    return int(rows[0][0])


def test_first_contacts_still_work_on_the_primary(with_standby: Settings) -> None:
    make_admin()
    assert first_contact(make_user()).created
