"""The post-mortem's integrity checks and repair, as units of work.

The counts and lists read from the read replica when one is configured; repair reads and
writes the primary only (it must see what it writes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import peewee
from peewee import JOIN, fn

from repo.db import (
    database,
    is_sqlite,
    replica_unit_of_work,
    unit_of_work,
    write_transaction,
)
from repo.errors import InvalidInput
from repo.ids import ConversationId, CustomerId
from repo.models import Conversation, Profile, User
from repo.users import profile_name
from repo.views import OrphanedConversation, ProfileCoverage, RepairReport

MAX_ORPHANS_LISTED = 100
DEFAULT_BATCH_SIZE = 1000

# The seed's monitoring query. PostgreSQL runs it as written; SQLite has no ::numeric,
# so it gets the same figures with a REAL division.
_PROFILE_COVERAGE = """
    SELECT
      (SELECT COUNT(*) FROM profiles) as profiles_count,
      (SELECT COUNT(*) FROM users) as users_count,
      (SELECT COUNT(*) FROM conversations) as conversations_count,
      (SELECT COUNT(*) FROM conversations c LEFT JOIN profiles p ON c.customer_id = p.id
        WHERE p.id IS NULL) as orphaned_conversations,
      ROUND(
        {profiles_count} /
        NULLIF((SELECT COUNT(*) FROM users), 0) * 100,
        2
      ) as profile_coverage_percent"""
_PROFILES_COUNT = {
    "postgresql": "(SELECT COUNT(*) FROM profiles)::numeric",
    "sqlite": "CAST((SELECT COUNT(*) FROM profiles) AS REAL)",
}


def _orphans() -> peewee.ModelSelect[Conversation]:
    """Conversations whose customer_id has no profile (the seed's detection query)."""
    return (
        Conversation.select()
        .join(Profile, JOIN.LEFT_OUTER, on=(Conversation.customer == Profile.id))
        .where(Profile.id.is_null())
    )


@replica_unit_of_work
def count_orphaned_conversations() -> int:
    """How many conversations have no customer profile (always 0 while the invariant holds)."""
    return int(_orphans().count())


@replica_unit_of_work
def find_orphaned_conversations(*, first: int = MAX_ORPHANS_LISTED) -> list[OrphanedConversation]:
    """The oldest ``first`` orphaned conversations."""
    if not 1 <= first <= MAX_ORPHANS_LISTED:
        raise InvalidInput(f"first must be between 1 and {MAX_ORPHANS_LISTED}, got {first}")
    return _list_orphans(_orphans(), first)


def _list_orphans(
    query: peewee.ModelSelect[Conversation], first: int
) -> list[OrphanedConversation]:
    rows: Any = (
        query.select(Conversation.id, Conversation.customer, Conversation.created_at)
        .order_by(Conversation.created_at, Conversation.id)
        .limit(first)
        .tuples()
    )
    return [
        OrphanedConversation(ConversationId(cid), CustomerId(customer_id), created_at)
        for cid, customer_id, created_at in rows
    ]


@replica_unit_of_work
def profile_coverage() -> ProfileCoverage:
    """The seed's monitoring figures: counts, orphans and the share of users with a profile."""
    sql = _PROFILE_COVERAGE.format(
        profiles_count=_PROFILES_COUNT["sqlite" if is_sqlite() else "postgresql"]
    )
    profiles, users, conversations, orphaned, percent = database.execute_sql(sql).fetchone()
    return ProfileCoverage(
        profiles_count=profiles,
        users_count=users,
        conversations_count=conversations,
        orphaned_conversations=orphaned,
        profile_coverage_percent=None if percent is None else float(percent),
    )


@unit_of_work
def repair_orphaned_conversations(
    *,
    dry_run: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> RepairReport:
    """Create the missing profiles of orphaned conversations from ``users`` (dry run by default).

    Applies in batches of ``batch_size`` customers, each its own short transaction, so it
    never holds long locks and can be stopped and rerun: a second apply creates nothing.
    ``progress`` hears how many customers each batch handled. Orphans whose customer has
    no ``users`` row cannot be healed; they are reported, never deleted.
    """
    if batch_size < 1:
        raise InvalidInput(f"batch size must be at least 1, got {batch_size}")
    before = int(_orphans().count())
    if dry_run:
        created = int(_healable().select(fn.COUNT(fn.DISTINCT(Conversation.customer))).scalar())
        after = before - int(_healable().count())
    else:
        created, last = 0, None
        while batch := _next_healable_customers(after_id=last, limit=batch_size):
            with write_transaction():
                created += _create_profiles(batch)
            last = batch[-1]
            if progress is not None:
                progress(len(batch))
        after = int(_orphans().count())
    unrepairable = _list_orphans(
        _orphans()
        .join(User, JOIN.LEFT_OUTER, on=(User.id == Conversation.customer), src=Conversation)
        .where(User.id.is_null()),
        MAX_ORPHANS_LISTED,
    )
    return RepairReport(
        dry_run=dry_run,
        profiles_created=created,
        orphaned_conversations_before=before,
        orphaned_conversations_after=after,
        unrepairable=unrepairable,
    )


def _healable() -> peewee.ModelSelect[Conversation]:
    """Orphaned conversations whose customer has a users row to build a profile from."""
    return _orphans().join(User, on=(User.id == Conversation.customer), src=Conversation)


def _next_healable_customers(*, after_id: CustomerId | None, limit: int) -> list[CustomerId]:
    """The next customers to heal in customer_id order (keyset: each batch reads only its range)."""
    query = _healable().select(Conversation.customer).distinct()
    if after_id is not None:
        query = query.where(Conversation.customer > after_id)
    rows: Any = query.order_by(Conversation.customer).limit(limit).tuples()
    return [CustomerId(customer_id) for (customer_id,) in rows]


def _create_profiles(customer_ids: list[CustomerId]) -> int:
    source = User.select(User.id, profile_name(), fn.COALESCE(User.profile_picture_url, "")).where(
        User.id.in_(customer_ids)
    )
    return int(
        Profile.insert_from(source, fields=[Profile.id, Profile.name, Profile.avatar_url])
        .on_conflict(conflict_target=[Profile.id], action="NOTHING")
        .as_rowcount()
        .execute()
    )
