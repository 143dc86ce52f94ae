"""`helpline integrity check`: every invariant and safeguard of the post-mortem, checked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peewee import JOIN, fn

from repo import backend
from repo.database import database
from repo.integrity import (
    count_choices_in_flight,
    count_orphaned_conversations,
    find_count_drift,
    find_orphaned_conversations,
)
from repo.models import Conversation, Profile, User
from repo.units import replica_unit_of_work

OK, WARNING, VIOLATION = "ok", "warning", "violation"
SAMPLE_SIZE = 10
FOREIGN_KEY = "conversations_customer_id_fkey"
UNIQUE_CUSTOMER = "conversations_customer_id_key"
PROFILE_TRIGGER = "users_create_profile"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str
    summary: str
    count: int | None = None
    sample: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "summary": self.summary,
            "count": self.count,
            "sample": self.sample,
        }


@replica_unit_of_work
def run_checks(*, strict: bool = False) -> list[Check]:
    """Run every check; users without a profile are a warning unless ``strict``."""
    return [
        _orphaned_conversations(),
        _users_without_profile(strict=strict),
        _conversations_with_non_admin_admin(),
        _conversations_whose_admin_is_their_customer(),
        _admins_whose_count_differs(),
        _choices_in_flight(),
        _customers_with_several_conversations(),
        _constraint(FOREIGN_KEY, "foreign key conversations.customer_id -> profiles.id"),
        _constraint(UNIQUE_CUSTOMER, "one admin conversation per customer"),
        _trigger(),
    ]


def _counted(name: str, count: int, sample: list[Any], *, what: str, bad: str) -> Check:
    status = OK if count == 0 else bad
    return Check(name, status, f"{count} {what}", count, [str(s) for s in sample])


def _rows_found(name: str, query: Any, *, order: Any, what: str, bad: str) -> Check:
    """A check that ``query`` finds no row; a sample of the first (by ``order``) when it does
    (only then: each is another scan)."""
    count = query.count()
    sample = _first(query.order_by(order) if order is not None else query) if count else []
    return _counted(name, count, sample, what=what, bad=bad)


def _first(query: Any) -> list[Any]:
    """The first column of the first SAMPLE_SIZE rows."""
    return [row[0] for row in query.limit(SAMPLE_SIZE).tuples()]


def _orphaned_conversations() -> Check:
    count = count_orphaned_conversations()
    # A sample only when there is something to show: each is another scan of the table.
    sample = [o.id for o in find_orphaned_conversations(first=SAMPLE_SIZE)] if count else []
    return _counted(
        "orphaned_conversations",
        count,
        sample,
        what="conversation(s) whose customer has no profile",
        bad=VIOLATION,
    )


def _users_without_profile(*, strict: bool) -> Check:
    query = (
        User.select(User.id)
        .join(Profile, JOIN.LEFT_OUTER, on=(Profile.id == User.id))
        .where(Profile.id.is_null())
    )
    return _rows_found(
        "users_without_profile",
        query,
        order=User.created_at,
        what="user(s) without a profile (healed on first contact)",
        bad=VIOLATION if strict else WARNING,
    )


def _conversations_with_non_admin_admin() -> Check:
    admin = Profile.alias("admin_profile")
    query = (
        Conversation.select(Conversation.id)
        .join(admin, JOIN.LEFT_OUTER, on=(admin.id == Conversation.admin))
        .where(admin.id.is_null() | ~admin.is_admin)
    )
    return _rows_found(
        "conversations_with_non_admin_admin",
        query,
        order=Conversation.created_at,
        what="conversation(s) whose admin_id is not an admin",
        bad=VIOLATION,
    )


def _conversations_whose_admin_is_their_customer() -> Check:
    """An admin who is also a customer never answers their own conversation: the balancer
    skips them and assignConversation refuses it; a row written another way shows here."""
    query = Conversation.select(Conversation.id).where(Conversation.admin == Conversation.customer)
    return _rows_found(
        "conversations_whose_admin_is_their_customer",
        query,
        order=Conversation.created_at,
        what="conversation(s) whose admin is their own customer",
        bad=VIOLATION,
    )


def _admins_whose_count_differs() -> Check:
    """admin_conversation_counts steers who gets the next customer: a row that differs from
    the conversations its admin holds unbalances the team (``integrity repair --apply``)."""
    drift = find_count_drift()
    return _counted(
        "admins_whose_count_differs",
        len(drift),
        [
            f"{d.admin_id} counted {d.counted} ({d.open_counted} open), "
            f"holds {d.held} ({d.open_held} open)"
            for d in drift[:SAMPLE_SIZE]
        ],
        what="admin(s) whose admin_conversation_counts row differs from their conversations",
        bad=VIOLATION,
    )


def _choices_in_flight() -> Check:
    count = count_choices_in_flight()
    return _counted(
        "choices_in_flight",
        count,
        [],
        what="first contact(s) between their choice of admin and their conversation: under "
        "way, or stopped there (they tilt the balance only; integrity repair --apply clears them)",
        bad=WARNING,
    )


def _customers_with_several_conversations() -> Check:
    query = (
        Conversation.select(Conversation.customer)
        .group_by(Conversation.customer)
        .having(fn.COUNT(Conversation.id) > 1)
    )
    return _rows_found(
        "customers_with_several_conversations",
        query,
        order=None,
        what="customer(s) with more than one admin conversation",
        bad=VIOLATION,
    )


def _constraint(name: str, meaning: str) -> Check:
    read = backend.pick(sqlite=_sqlite_constraint, postgresql=_postgres_constraint)
    exists, validated = read(name)
    if not exists:
        return Check(name, VIOLATION, f"missing: {meaning}")
    if not validated:
        return Check(name, VIOLATION, f"present but not validated: {meaning}")
    return Check(name, OK, f"present and validated: {meaning}")


def _postgres_constraint(name: str) -> tuple[bool, bool]:
    row = database.execute_sql(
        "SELECT convalidated FROM pg_constraint "
        "WHERE conname = %s AND conrelid = 'conversations'::regclass",
        (name,),
    ).fetchone()
    return (row is not None, bool(row and row[0]))


def _sqlite_constraint(name: str) -> tuple[bool, bool]:
    """SQLite keeps constraint names only in the DDL; a foreign key holds if its check is empty."""
    ddl = database.execute_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'conversations'"
    ).fetchone()
    if ddl is None or f"CONSTRAINT {name} " not in ddl[0]:
        return (False, False)
    if name != FOREIGN_KEY:
        return (True, True)
    violations = database.execute_sql("PRAGMA foreign_key_check(conversations)").fetchall()
    return (True, not any(row[2] == "profiles" for row in violations))


def _trigger() -> Check:
    sql = backend.pick(
        sqlite="SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = ? "
        "AND tbl_name = 'users'",
        postgresql="SELECT 1 FROM pg_trigger WHERE tgname = %s AND tgrelid = 'users'::regclass "
        "AND NOT tgisinternal AND tgenabled <> 'D'",
    )
    present = database.execute_sql(sql, (PROFILE_TRIGGER,)).fetchone() is not None
    return Check(
        PROFILE_TRIGGER,
        OK if present else VIOLATION,
        ("present" if present else "missing") + ": new users get a profile",
    )
