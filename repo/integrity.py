"""The post-mortem's integrity checks and repair, as units of work.

The counts and lists read from the read replica when one is configured; repair reads and
writes the primary only (it must see what it writes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import peewee
from peewee import JOIN, fn

from repo import backend
from repo.database import database
from repo.errors import InvalidInput
from repo.ids import ConversationId, CustomerId, ProfileId
from repo.models import Conversation, Profile, User
from repo.units import replica_unit_of_work, unit_of_work_once
from repo.users import profile_avatar_url, profile_name
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
        profiles_count=backend.pick(
            sqlite=_PROFILES_COUNT["sqlite"], postgresql=_PROFILES_COUNT["postgresql"]
        )
    )
    profiles, users, conversations, orphaned, percent = database.execute_sql(sql).fetchone()
    return ProfileCoverage(
        profiles_count=profiles,
        users_count=users,
        conversations_count=conversations,
        orphaned_conversations=orphaned,
        profile_coverage_percent=None if percent is None else float(percent),
    )


@unit_of_work_once  # its batches commit as they go: a rerun is the operator's (idempotent)
def repair_orphaned_conversations(
    *,
    dry_run: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> RepairReport:
    """Create the missing profiles of orphaned conversations from ``users`` (dry run by default).

    Applies in batches of ``batch_size`` customers, each its own short transaction, so it
    never holds long locks and can be stopped and rerun: a second apply creates nothing.
    ``progress`` hears how many profiles each batch created. Orphans whose customer has
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
        while True:
            with backend.write_transaction():
                _no_jit()
                end = _batch_end(after_id=last, size=batch_size)
                batch = _create_profiles(after_id=last, up_to=end)
            created += batch
            if batch and progress is not None:
                progress(batch)
            if end is None:
                break
            last = end
        after = int(_orphans().count())
    unrepairable = (
        _list_orphans(
            _orphans()
            .join(User, JOIN.LEFT_OUTER, on=(User.id == Conversation.customer), src=Conversation)
            .where(User.id.is_null()),
            MAX_ORPHANS_LISTED,
        )
        if after
        else []  # no orphan left, none to list: spares a scan of every conversation
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


def _orphans_after(after_id: CustomerId | None) -> peewee.ModelSelect[Conversation]:
    """Orphaned conversations after ``after_id``, for a walk in customer_id order (keyset).

    "Has no profile" is a correlated subquery, not the anti join of ``_orphans``, on purpose:
    PostgreSQL plans that anti join as a hash or merge over every profile, again on each
    batch, which made repairing 1,000,000 orphans take 8 minutes; this form probes
    profiles_pkey once per conversation walked, so a batch reads only its own range.
    """
    profile = Profile.select(Profile.id).where(Profile.id == Conversation.customer)
    query = Conversation.select(Conversation.customer).where(
        peewee.Expression(profile, peewee.OP.IS, None)
    )
    return query if after_id is None else query.where(Conversation.customer > after_id)


def _batch_end(*, after_id: CustomerId | None, size: int) -> CustomerId | None:
    """The ``size``-th healable customer after ``after_id``, or None when fewer remain."""
    rows: Any = (
        _orphans_after(after_id)
        .join(User, on=(User.id == Conversation.customer))
        .distinct()
        .order_by(Conversation.customer)
        .offset(size - 1)
        .limit(1)
        .tuples()
    )
    return next((CustomerId(customer_id) for (customer_id,) in rows), None)


def _create_profiles(*, after_id: CustomerId | None, up_to: CustomerId | None) -> int:
    """Create the profiles of the orphans' customers after ``after_id`` up to ``up_to``.

    The batch is sent as a range, not as its ids: building and parsing a thousand uuids
    per batch took about a third of the repair's time.
    """
    customers = _orphans_after(after_id)
    if up_to is not None:
        customers = customers.where(Conversation.customer <= up_to)
    source = User.select(User.id, profile_name(), profile_avatar_url()).where(
        User.id.in_(customers)
    )
    return int(
        Profile.insert_from(source, fields=[Profile.id, Profile.name, Profile.avatar_url])
        .on_conflict(conflict_target=[Profile.id], action="NOTHING")
        .as_rowcount()
        .execute()
    )


def _no_jit() -> None:
    """PostgreSQL: no JIT compilation for the rest of this transaction.

    The planner cannot tell how many walked conversations are orphans, guesses few and so
    prices a batch's walk over jit_above_cost: compiling it took ~100 ms for a ~3 ms read.
    """
    backend.no_jit()


# Admins whose admin_conversation_counts row differs from the conversations they hold: one
# statement, so one snapshot. Every writer changes a count in the same transaction as the
# conversations it counts (a first contact, a hand-over, an admin's removal), so within one
# snapshot the two agree exactly: a first contact in flight is in neither.
# The open count likewise: every status change moves it in its own transaction.
_COUNT_DRIFT = """
    SELECT p.id, COALESCE(c.conversation_count, 0), COALESCE(h.held, 0),
           COALESCE(c.open_count, 0), COALESCE(h.held_open, 0)
    FROM profiles p
    LEFT JOIN admin_conversation_counts c ON c.admin_id = p.id
    LEFT JOIN (
        SELECT admin_id, COUNT(*) AS held,
               SUM(CASE WHEN status = 'OPEN' THEN 1 ELSE 0 END) AS held_open
        FROM conversations GROUP BY admin_id
    ) h ON h.admin_id = p.id
    WHERE COALESCE(c.conversation_count, 0) <> COALESCE(h.held, 0)
       OR COALESCE(c.open_count, 0) <> COALESCE(h.held_open, 0)
    ORDER BY p.id"""
# The recount of some admins, under a lock that every writer of counts waits for (it
# conflicts with their row writes): the statement after it sees every count change committed
# together with its conversations, and none half-done. SQLite's BEGIN IMMEDIATE is the lock.
_LOCK_COUNTS_MODE = "SHARE ROW EXCLUSIVE"
_RECOUNT = """
    INSERT INTO admin_conversation_counts (admin_id, conversation_count, open_count)
    SELECT p.id, (SELECT COUNT(*) FROM conversations c WHERE c.admin_id = p.id),
           (SELECT COUNT(*) FROM conversations c WHERE c.admin_id = p.id AND c.status = 'OPEN')
    FROM profiles p WHERE p.id IN ({ids})
    ON CONFLICT (admin_id) DO UPDATE
    SET conversation_count = excluded.conversation_count, open_count = excluded.open_count"""
# Choices of first contacts that stopped between their choice and their conversation (a
# process killed, a give-back that failed too) stay in flight and tilt the balance. Clearing
# them is safe at any time: a first contact still in flight counts its conversation all the
# same (its release floors at 0), and only the balance is off for that moment.
_IN_FLIGHT = "SELECT COALESCE(SUM(choices_in_flight), 0) FROM admin_conversation_counts"
_CLEAR_IN_FLIGHT = (
    "UPDATE admin_conversation_counts SET choices_in_flight = 0 WHERE choices_in_flight > 0"
)


def count_choices_in_flight() -> int:
    """Inside a unit of work: first contacts' choices not yet counted with a conversation."""
    return int(database.execute_sql(_IN_FLIGHT).fetchone()[0])


@dataclass(frozen=True, slots=True)
class CountDrift:
    admin_id: ProfileId
    counted: int  # what admin_conversation_counts says
    held: int  # the conversations they hold
    open_counted: int = 0  # of those, what it says are open
    open_held: int = 0  # and how many are


def find_count_drift(*, first: int | None = None) -> list[CountDrift]:
    """Inside a unit of work: the admins whose count differs from what they hold, by id."""
    sql = _COUNT_DRIFT if first is None else f"{_COUNT_DRIFT} LIMIT {int(first)}"
    rows = database.execute_sql(sql).fetchall()
    return [
        CountDrift(ProfileId(UUID(str(a))), int(c), int(h), int(oc), int(oh))
        for a, c, h, oc, oh in rows
    ]


@unit_of_work_once  # its batches commit as they go; a rerun finds what is left
def recount_admin_conversations(
    *, dry_run: bool = True, batch_size: int = DEFAULT_BATCH_SIZE
) -> tuple[int, int]:
    """Put each drifted admin's count back in line with their conversations, in batches of
    ``batch_size`` admins, each a short transaction; (drifted before, drifted after).

    Safe while first contacts run: the drifted admins are found in one statement (no false
    drift: see _COUNT_DRIFT), then each batch takes the lock every count writer waits for and
    recounts those admins from a snapshot taken under it (see _LOCK_COUNTS_MODE), so the
    lock is held for their indexed counts only, never a scan of the tables."""
    if batch_size < 1:
        raise InvalidInput(f"batch size must be at least 1, got {batch_size}")
    drifted = [d.admin_id for d in find_count_drift()]  # one statement: a full scan, unlocked
    before = len(drifted)
    if not dry_run and count_choices_in_flight():
        with backend.write_transaction():  # under the lock: two repairs never lock rows crosswise
            backend.lock_table("admin_conversation_counts", _LOCK_COUNTS_MODE)
            database.execute_sql(_CLEAR_IN_FLIGHT)
    if dry_run or not before:
        return before, before
    for start in range(0, len(drifted), batch_size):
        batch = drifted[start : start + batch_size]
        with backend.write_transaction():  # held only for these admins' indexed counts
            backend.lock_table("admin_conversation_counts", _LOCK_COUNTS_MODE)
            database.execute_sql(
                _RECOUNT.format(ids=backend.placeholders(len(batch))), [str(a) for a in batch]
            )
    return before, len(find_count_drift())
