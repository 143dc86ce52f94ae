"""Integrity checks and repair on legacy orphans, compared with the post-mortem's own SQL."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest

from repo.database import database, is_sqlite
from repo.integrity import (
    count_orphaned_conversations,
    find_orphaned_conversations,
    profile_coverage,
    repair_orphaned_conversations,
)
from repo.views import ProfileCoverage
from tests.factories import (
    constraints_bypassed,
    count_rows,
    first_contact,
    make_admin,
    make_legacy_user,
    make_orphaned_conversation,
    make_user,
)

pytestmark = pytest.mark.usefixtures("db")

OPS_SQL = Path(__file__).resolve().parents[2] / "schema" / "ops"


def run_seed_sql(name: str) -> list[tuple[object, ...]]:
    """Run one of the post-mortem's queries exactly as written."""
    with constraints_bypassed() as cursor:
        cursor.execute((OPS_SQL / name).read_text())
        return list(cursor.fetchall()) if cursor.description else []


@pytest.fixture
def legacy_orphans() -> dict[str, object]:
    """One orphan whose customer has a users row (healable), one whose customer has none."""
    admin_id = make_admin()
    healthy = first_contact(make_user()).conversation.id
    healable_customer = make_user(full_name="Hal Healable")
    healable = make_orphaned_conversation(healable_customer, admin_id)
    lost_customer = uuid4()
    lost = make_orphaned_conversation(lost_customer, admin_id)
    return {
        "healthy": healthy,
        "healable": healable,
        "healable_customer": healable_customer,
        "lost": lost,
        "lost_customer": lost_customer,
    }


def test_orphans_are_found_as_the_seed_query_finds_them(legacy_orphans: dict[str, object]) -> None:
    seed_rows = run_seed_sql("orphaned_conversations.sql")

    found = find_orphaned_conversations()

    assert count_orphaned_conversations() == 2 == len(seed_rows)
    assert {o.id for o in found} == {legacy_orphans["healable"], legacy_orphans["lost"]}
    assert {str(row[0]) for row in seed_rows} == {str(o.id) for o in found}
    assert len(run_seed_sql("integrity_test.sql")) == 2


def test_profile_coverage_matches_the_seed_monitoring_query(
    legacy_orphans: dict[str, object],
) -> None:
    coverage = profile_coverage()

    assert coverage == ProfileCoverage(
        profiles_count=2,
        users_count=3,
        conversations_count=3,
        orphaned_conversations=2,
        profile_coverage_percent=66.67,
    )
    if not is_sqlite():  # the seed's ::numeric is PostgreSQL-only
        (row,) = run_seed_sql("monitoring.sql")
        assert (*row[:4], float(row[4])) == (2, 3, 3, 2, 66.67)


def test_coverage_percent_is_null_without_users() -> None:
    assert profile_coverage().profile_coverage_percent is None


def test_dry_run_reports_and_writes_nothing(legacy_orphans: dict[str, object]) -> None:
    report = repair_orphaned_conversations()

    assert report.dry_run
    assert (
        report.profiles_created,
        report.orphaned_conversations_before,
        report.orphaned_conversations_after,
    ) == (1, 2, 1)
    assert [o.id for o in report.unrepairable] == [legacy_orphans["lost"]]
    assert count_rows("profiles") == 2
    assert count_orphaned_conversations() == 2


def test_apply_heals_orphans_with_users_and_reports_the_rest(
    legacy_orphans: dict[str, object],
) -> None:
    report = repair_orphaned_conversations(dry_run=False)

    assert (
        report.profiles_created,
        report.orphaned_conversations_before,
        report.orphaned_conversations_after,
    ) == (1, 2, 1)
    assert [o.customer_id for o in report.unrepairable] == [legacy_orphans["lost_customer"]]
    assert [o.id for o in find_orphaned_conversations()] == [legacy_orphans["lost"]]
    assert count_rows("conversations") == 3  # never deleted

    again = repair_orphaned_conversations(dry_run=False)
    assert (again.profiles_created, again.orphaned_conversations_after) == (0, 1)


def test_get_or_create_heals_an_orphaned_conversation_on_first_contact(
    legacy_orphans: dict[str, object],
) -> None:
    result = first_contact(legacy_orphans["healable_customer"])  # type: ignore[arg-type]

    assert result.conversation.id == legacy_orphans["healable"]
    assert (result.created, result.profile_created) == (False, True)
    assert count_orphaned_conversations() == 1


def test_seed_repair_runs_unchanged_once_every_orphan_has_a_user() -> None:
    admin_id = make_admin()
    customer = make_user(full_name="Hal Healable")
    make_orphaned_conversation(customer, admin_id)
    make_orphaned_conversation(make_legacy_user(full_name=None, email="x@example.com"), admin_id)

    run_seed_sql("repair_orphaned_conversations.sql")

    assert count_orphaned_conversations() == 0
    assert len(run_seed_sql("integrity_test.sql")) == 0
    with database.connection_context():
        names = {r[0] for r in database.execute_sql("SELECT name FROM profiles").fetchall()}
    assert names == {"Ada Admin", "Hal Healable", "x@example.com"}


def test_apply_works_in_batches_and_an_interrupted_run_can_be_rerun() -> None:
    admin_id = make_admin()
    orphans = [make_orphaned_conversation(make_user(), admin_id) for _ in range(7)]
    seen: list[int] = []

    def stop_after_first_batch(handled: int) -> None:
        seen.append(handled)
        raise KeyboardInterrupt  # the operator's Ctrl-C

    with pytest.raises(KeyboardInterrupt):
        repair_orphaned_conversations(dry_run=False, batch_size=3, progress=stop_after_first_batch)
    assert seen == [3]
    assert count_orphaned_conversations() == 4  # the first batch committed

    batches: list[int] = []
    report = repair_orphaned_conversations(dry_run=False, batch_size=3, progress=batches.append)

    assert batches == [3, 1]
    assert (
        report.profiles_created,
        report.orphaned_conversations_before,
        report.orphaned_conversations_after,
    ) == (4, 4, 0)
    assert count_rows("conversations") == len(orphans)
