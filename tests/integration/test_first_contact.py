"""The first contact on PostgreSQL, as the driver sends it: one transaction, the customer's
profile locked with FOR UPDATE before the conversation's INSERT, the look-up under the lock,
and the lock as what keeps racing first contacts apart."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, ClassVar

import psycopg2.extensions
import pytest

from gql.http.settings import Settings
from repo import conversations
from repo.database import database
from repo.errors import IntegrityViolation, NoAdminAvailable
from repo.views import AdminConversation
from tests.factories import count_rows, first_contact, make_admin, make_legacy_user, make_user
from tests.racing import outcomes_at_once

pytestmark = pytest.mark.timeout(60)

Sent = list[tuple[int, str]]  # (the connection's id, the statement)


class RecordingCursor(psycopg2.extensions.cursor):
    """A cursor that notes every statement it sends, with its connection."""

    sent: ClassVar[Sent] = []

    def execute(self, query: Any, vars: Any = None) -> Any:
        text = query.decode() if isinstance(query, bytes) else str(query)
        RecordingCursor.sent.append((id(self.connection), text))
        return super().execute(query, vars)


@pytest.fixture
def sent(postgres: Settings) -> Iterator[Sent]:
    """The statements the pool's connections send while the test runs (new connections)."""
    pool = database.obj
    pool.close_idle()
    pool.connect_params["cursor_factory"] = RecordingCursor
    RecordingCursor.sent = []
    try:
        yield RecordingCursor.sent
    finally:
        del pool.connect_params["cursor_factory"]
        pool.close_idle()


def kind(statement: str) -> str:
    """What a statement of the first contact does, in words."""
    sql = " ".join(statement.split())
    patterns = [
        ("BEGIN", r"^BEGIN\b"),
        ("COMMIT", r"^COMMIT\b"),
        ("ROLLBACK", r"^ROLLBACK\b"),
        (
            "choose the admin and count it, alone in one round trip",
            r"^SET LOCAL synchronous_commit = off; SELECT pg_advisory_xact_lock\(\d+\); "
            r'INSERT INTO "admin_conversation_counts" .* SELECT .* ON CONFLICT .* RETURNING',
        ),
        ("session settings", r"^SET\b"),
        ("create the users row", r'^INSERT INTO "users"'),
        ("look for the users row", r'^SELECT EXISTS\(SELECT 1 FROM "users"'),
        ("ensure the profile", r'^INSERT INTO "profiles" .* ON CONFLICT .* DO NOTHING'),
        (
            "lock the profile",
            r'^SELECT "t1"."id" FROM "profiles" AS "t1" WHERE .* FOR NO KEY UPDATE$',
        ),
        ("look for the conversation", r'^SELECT "t1"."id" FROM "conversations" AS "t1" WHERE'),
        ("serialize the choice of admin", r"^SELECT pg_advisory_xact_lock\("),
        (
            "choose the admin and count the conversation",
            r'^INSERT INTO "admin_conversation_counts" .* SELECT .* ON CONFLICT .* RETURNING',
        ),
        (
            "insert the conversation, if its admin still is one",
            r'^INSERT INTO "conversations" .* SELECT .* INNER JOIN "profiles" AS "admin" '
            r'ON \(\("admin"."id" = %s\) AND "admin"."is_admin"\) .* RETURNING',
        ),
        (
            "count the choice with its conversation",
            r'^UPDATE "admin_conversation_counts" SET "conversation_count" = .* \+ .*'
            r'"choices_in_flight" = CASE',
        ),
        (
            "give the choice back",
            r'^UPDATE "admin_conversation_counts" SET "choices_in_flight" = .* - ',
        ),
        ("store the welcome message", r"^WITH stored AS \( INSERT INTO messages"),
        ("read the conversation", r'^SELECT .* FROM "conversations" AS "t\d+" INNER JOIN'),
    ]
    return next((name for name, pattern in patterns if re.search(pattern, sql)), sql)


def steps(sent: Sent) -> list[str]:
    return [kind(sql) for _, sql in sent if kind(sql) != "session settings"]


def test_a_first_contact_is_one_transaction_that_locks_before_it_inserts(sent: Sent) -> None:
    make_admin()
    customer = make_user()
    sent.clear()

    result = first_contact(customer)

    assert result.created
    assert steps(sent) == [
        "read the conversation",  # the hot path's read, outside any transaction
        # the choice of admin, serialized only while its own implicit transaction lasts
        "choose the admin and count it, alone in one round trip",
        "BEGIN",
        "ensure the profile",
        "lock the profile",
        "look for the conversation",  # under the lock: a racer's commit is seen
        # the admin's count row locked first: a removal of the admin that committed first
        # is seen by the insert, which then inserts nothing, and the contact chooses again
        "count the choice with its conversation",  # the counts never differ from what is held
        "insert the conversation, if its admin still is one",
        "store the welcome message",
        "COMMIT",
        "read the conversation",  # committed
    ]
    assert len({connection for connection, _ in sent}) == 1


def test_a_conversation_found_under_the_lock_is_returned_and_nothing_inserted(
    sent: Sent,
) -> None:
    make_admin()
    customer = make_legacy_user()
    first = first_contact(customer)
    sent.clear()

    again = first_contact(customer, known_missing=True)

    assert (again.conversation.id, again.created) == (first.conversation.id, False)
    assert steps(sent) == [
        "choose the admin and count it, alone in one round trip",
        "BEGIN",
        "ensure the profile",
        "lock the profile",
        "look for the conversation",
        "give the choice back",  # a racer made it: the count goes back
        "COMMIT",
        "read the conversation",
    ]


def test_no_admin_writes_nothing(sent: Sent) -> None:
    customer = make_legacy_user()
    sent.clear()

    with pytest.raises(NoAdminAvailable):
        first_contact(customer)

    assert steps(sent) == [
        "read the conversation",
        "choose the admin and count it, alone in one round trip",  # none to choose: no write
        "look for the users row",  # which error to give: the customer's comes first
    ]
    assert (count_rows("profiles"), count_rows("conversations")) == (0, 0)


@pytest.mark.parametrize("locked", [True, False], ids=["with-the-lock", "lock-switched-off"])
def test_the_profile_lock_is_what_keeps_racing_first_contacts_apart(
    postgres: Settings, monkeypatch: pytest.MonkeyPatch, locked: bool
) -> None:
    """Signed-up customers (their profile exists, so ensuring it takes no lock of its own):
    without the FOR UPDATE, racers each try to insert the conversation and all but one fail
    on the unique key; with it, they queue, and every one gets the one conversation."""
    if not locked:  # the test-only hook: the lock step does nothing
        monkeypatch.setattr(conversations, "_lock_profile", lambda customer_id: True)
    make_admin()
    failures: list[object] = []
    created = 0
    for _ in range(3):  # bounded: a few customers, 16 racers each
        customer = make_user()
        outcomes = outcomes_at_once([lambda customer=customer: first_contact(customer)] * 16)
        failures += [o for o in outcomes if isinstance(o, Exception)]
        created += sum(1 for o in outcomes if isinstance(o, AdminConversation) and o.created)
    assert count_rows("conversations") == 3
    if locked:
        assert (failures, created) == ([], 3)
    else:
        assert failures
        assert {type(f) for f in failures} == {IntegrityViolation}
