"""The admin conversation: one per customer, got or created in one atomic block."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import peewee
from peewee import JOIN, Case, Value, fn

from repo import backend, events
from repo.counts import count_opened
from repo.errors import ConversationNotFound, CustomerNotFound, InvalidInput, NoAdminAvailable
from repo.ids import ConversationId, CustomerId, ProfileId
from repo.messages import post_message
from repo.models import (
    AdminConversationCount,
    Conversation,
    ConversationAssignmentTotal,
    Profile,
    User,
)
from repo.prepared import PreparedQuery, PreparedSelect
from repo.rows import PROFILE_WIDTH, profile_columns, profile_from
from repo.units import unit_of_work, unit_of_work_once
from repo.users import NewUser, ensure_profile
from repo.views import AdminConversation, ConversationView

log = logging.getLogger(__name__)

Customer = Profile.alias("customer")
Admin = Profile.alias("admin")
Count = AdminConversationCount


@unit_of_work
def get_or_create_admin_conversation(
    customer_id: CustomerId,
    *,
    welcome_message: str,
    new_user: NewUser | None = None,
    known_missing: bool = False,
) -> AdminConversation:
    """Return the customer's admin conversation, creating profile and conversation if missing.

    The admin is chosen first, in a short transaction of its own that serializes the choice
    and counts it as in flight (the fewest conversations, online admins first). Then one
    atomic block, the same statements on both backends: ensure the profile, lock it, look for
    the conversation under the lock; when there is none, insert it and the admin's
    ``welcome_message`` (the first message of every new conversation) and move the choice to
    the admin's conversation count; when a racer made it, give the choice back. A block that
    fails gives the choice back too. Then, committed, the conversation is read.
    ``new_user`` (from a verified sign-up token) creates the users row when there is none.
    ``known_missing``: the caller has just looked it up and found none, so go straight to
    the choice and the locked block (which looks again under the lock).
    """
    if not known_missing and (found := _find_conversation_of(customer_id)):
        return AdminConversation(found, created=False, profile_created=False)
    for _ in range(CHOICES):
        try:
            admin_id = choose_admin(customer_id)  # before anything is written
        except NoAdminAvailable:
            if new_user is None and not _has_users_row(customer_id):  # the customer's first
                raise CustomerNotFound(f"customer {customer_id} not found: no users row") from None
            raise
        try:
            with backend.write_transaction():  # SQLite: BEGIN IMMEDIATE, its one write lock
                profile_created = ensure_profile(customer_id)
                if not _lock_profile(customer_id):  # no users row: a verified sign-up may add it
                    if new_user is None or not _ensure_user(customer_id, new_user):
                        raise CustomerNotFound(f"customer {customer_id} not found: no users row")
                    profile_created = _lock_profile(customer_id)  # its trigger made the profile
                # A separate statement: under READ COMMITTED one that waited for the lock would
                # still see its old snapshot of conversations, and so miss a racer's commit.
                created = _CONVERSATION_OF.first(customer_id) is None
                if created:
                    # The admin's count row, locked: a removal of this admin waits for this
                    # commit, or committed first, and then the insert sees they left.
                    _COUNT_CHOSEN.execute(admin_id)
                    conversation_id = _insert_conversation(customer_id, admin_id)
                    if conversation_id is None:
                        raise _ChosenAdminLeft
                    post_message(conversation_id, admin_id, welcome_message)
                else:  # a racer made it while this call chose
                    _RELEASE_CHOICE.execute(admin_id)
        except _ChosenAdminLeft:
            _give_back(admin_id)
            continue  # choose again, among the admins there are now
        except BaseException:
            _give_back(admin_id)
            raise
        break
    else:
        raise NoAdminAvailable("the admins chosen kept leaving; try again")
    found = _find_conversation_of(customer_id)  # committed: the conversation is there
    assert found is not None
    return AdminConversation(found, created=created, profile_created=profile_created)


@unit_of_work
def find_admin_conversation(customer_id: CustomerId) -> ConversationView | None:
    """The customer's admin conversation, or None while there is none (never writes)."""
    return _find_conversation_of(customer_id)


@unit_of_work
def find_conversation(conversation_id: ConversationId) -> ConversationView | None:
    """A conversation by id, or None."""
    return _find_conversation(conversation_id)


_BY_CUSTOMER = PreparedSelect(
    lambda customer: conversation_query().where(Conversation.customer == customer)
)
_BY_ID = PreparedSelect(
    lambda conversation: conversation_query().where(Conversation.id == conversation)
)


def _find_conversation_of(customer_id: CustomerId) -> ConversationView | None:
    row = _BY_CUSTOMER.first(customer_id)  # the hot path: rendered once (see repo.prepared)
    return None if row is None else conversation_from(row)


def _find_conversation(conversation_id: ConversationId) -> ConversationView | None:
    row = _BY_ID.first(conversation_id)
    return None if row is None else conversation_from(row)


def conversation_query() -> Any:
    """A select of conversations with both profiles, for conversation_from."""
    return (
        Conversation.select(
            Conversation.id,
            Conversation.created_at,
            Conversation.updated_at,
            Conversation.last_message_at,
            Conversation.status,
            Conversation.snoozed_until,
            Conversation.resolved_at,
            Conversation.waiting_since,
            *profile_columns(Customer),
            *profile_columns(Admin),
        )
        .join(Customer, on=(Conversation.customer == Customer.id))
        .switch(Conversation)
        .join(Admin, on=(Conversation.admin == Admin.id))
    )


def conversation_from(row: Any) -> ConversationView:
    conversation_id, created_at, updated_at, last_message_at, status, snoozed_until = row[:6]
    resolved_at, waiting_since = row[6:8]
    return ConversationView(
        id=ConversationId(conversation_id),
        customer=profile_from(row, 8),
        admin=profile_from(row, 8 + PROFILE_WIDTH),
        created_at=created_at,
        updated_at=updated_at,
        last_message_at=last_message_at,
        status=status,
        snoozed_until=snoozed_until,
        resolved_at=resolved_at,
        waiting_since=waiting_since,
    )


def _ensure_user(customer_id: CustomerId, new_user: NewUser) -> bool:
    """Insert the users row (its trigger adds the profile); False when id or email exist."""
    inserted = (
        User.insert(id=customer_id, email=new_user.email, full_name=new_user.full_name)
        .on_conflict(action="NOTHING")
        .as_rowcount()
        .execute()
    )
    return bool(inserted)


def _lock_query(customer: CustomerId) -> Any:
    query = Profile.select(Profile.id).where(Profile.id == customer)
    # FOR NO KEY UPDATE: racing first contacts of this customer queue here, while inserts
    # that reference the profile (a message it sends, a conversation it gets as admin) do not
    return backend.for_update(query, keys_too=False)


_LOCK_PROFILE = PreparedSelect(_lock_query)
_CONVERSATION_OF = PreparedSelect(
    lambda customer: Conversation.select(Conversation.id).where(Conversation.customer == customer)
)


# The admin a conversation goes to: the fewest open conversations (held open, and chosen by
# first contacts still in flight; snoozed and resolved ones do not count) among admins who are
# online, else among all admins; ties to the oldest profile, then the lowest id; never the
# customer. One statement chooses the admin and counts the choice into ``counter``:
# conversation_count where the conversation moves in the same transaction (a hand-over, which
# moves open_count itself when the conversation is open), choices_in_flight for a first
# contact, whose own transaction moves it to conversation_count and open_count with the
# conversation (_COUNT_CHOSEN), so both always equal the conversations held (`helpline
# integrity check` compares them exactly). ``load``: what is balanced (``evenly``: every
# conversation held, for handing over resolved ones).
def _choice(counter: peewee.Field, *, evenly: bool = False) -> PreparedQuery:
    held = Count.conversation_count if evenly else Count.open_count
    return PreparedQuery(
        lambda customer, leaving: (
            AdminConversationCount.insert_from(
                Admin.select(Admin.id, Value(1))
                .join(Count, JOIN.LEFT_OUTER, on=(Count.admin == Admin.id))
                .where(Admin.is_admin, Admin.id != customer, Admin.id != leaving)
                .order_by(
                    Admin.is_online.desc(),
                    fn.COALESCE(held, 0) + fn.COALESCE(Count.choices_in_flight, 0),
                    Admin.created_at,
                    Admin.id,
                )
                .limit(1),
                fields=[AdminConversationCount.admin, counter],
            )
            .on_conflict(
                conflict_target=[AdminConversationCount.admin], update={counter: counter + 1}
            )
            .returning(AdminConversationCount.admin)
        )
    )


_CHOOSE_ADMIN = _choice(AdminConversationCount.conversation_count)
_CHOOSE_ADMIN_EVENLY = _choice(AdminConversationCount.conversation_count, evenly=True)
_CHOOSE_FOR_FIRST_CONTACT = _choice(AdminConversationCount.choices_in_flight)
# The conversation, inserted only while its admin is still an admin: in a statement after
# the admin's count row was locked, so it sees a removal that committed first.
_INSERT_CONVERSATION = PreparedQuery(
    lambda customer, admin: Conversation.insert_from(
        Customer.select(Customer.id, Admin.id)
        .join(Admin, on=((Admin.id == admin) & Admin.is_admin))
        .where(Customer.id == customer),
        fields=[Conversation.customer, Conversation.admin],
    ).returning(Conversation.id)
)
CHOICES = 3  # choices a first contact makes when the admin it chose is removed meanwhile


class _ChosenAdminLeft(Exception):
    """The admin chosen was removed before the conversation was inserted (rolled back)."""


def lock_count_of(admin_id: ProfileId) -> None:
    """Inside a transaction: lock the admin's count row (made if missing), which a first
    contact that chose them locks before inserting the conversation."""
    _LOCK_COUNT.execute(admin_id)


# PostgreSQL: first contacts of different customers choose one after the other, so two never
# both see the same admin as the least loaded. A transaction-level advisory lock, taken as late
# as the choice and released at commit; it locks no row (SQLite's BEGIN IMMEDIATE already
# serializes writers). Duplicates are kept out by the customer's FOR UPDATE, not by this.
ADMIN_CHOICE_LOCK = 0x68656C70  # "help"


def _lock_profile(customer_id: CustomerId) -> bool:
    """Lock the customer's profile row (False: there is none): racing first contacts of one
    customer queue here.

    PostgreSQL: ``SELECT ... FOR UPDATE``. SQLite has no row locks: the block's
    ``BEGIN IMMEDIATE`` already holds the database's one write lock.
    """
    return _LOCK_PROFILE.first(customer_id) is not None


def serialize_admin_choice() -> None:
    """Inside a transaction: no other first contact chooses an admin until it ends."""
    backend.advisory_xact_lock(ADMIN_CHOICE_LOCK)


def _choose_admin(
    customer_id: CustomerId, *, leaving: ProfileId | None = None, evenly: bool = False
) -> ProfileId:
    """Inside a transaction: the admin the rule gives the customer's conversation, counted
    already (never the customer, nor ``leaving``: an admin handing conversations over).
    ``evenly``: by every conversation held, not only the open ones (a resolved conversation
    handed over)."""
    serialize_admin_choice()
    choice = _CHOOSE_ADMIN_EVENLY if evenly else _CHOOSE_ADMIN
    return _chosen(choice.rows(customer_id, leaving or customer_id))


def choose_admin(customer_id: CustomerId) -> ProfileId:
    """The admin for the customer's new conversation, chosen and counted as in flight in a
    transaction of its own, so the choice is serialized only while that transaction lasts
    (holding it to the first contact's commit made first contacts 0.7 of this: BENCHMARKS.md).

    PostgreSQL: one round trip, three statements in one implicit transaction: its commit
    waits for no WAL flush (a choice in flight only steers the balance; the first contact's own
    commit flushes it, and a crash in between loses only that), the choice lock, then the
    choice and its count in one statement, whose fresh snapshot sees every count committed
    before it. The lock is released as soon as that
    transaction commits, server-side, without waiting for this thread to be scheduled again.
    SQLite: BEGIN IMMEDIATE around the same choice.
    """
    choose = backend.pick(sqlite=_choose_on_sqlite, postgresql=_choose_on_postgres)
    return _chosen(choose(customer_id))


def _choose_on_postgres(customer_id: CustomerId) -> list[tuple[Any, ...]]:
    return _CHOOSE_FOR_FIRST_CONTACT.rows(customer_id, customer_id, after=_CHOICE_ALONE)


def _choose_on_sqlite(customer_id: CustomerId) -> list[tuple[Any, ...]]:
    with backend.write_transaction():
        serialize_admin_choice()
        return _CHOOSE_FOR_FIRST_CONTACT.rows(customer_id, customer_id)


_CHOICE_ALONE = (
    f"SET LOCAL synchronous_commit = off; SELECT pg_advisory_xact_lock({ADMIN_CHOICE_LOCK}); "
)


def _chosen(rows: list[tuple[Any, ...]]) -> ProfileId:
    if not rows:
        raise NoAdminAvailable("no admin is available to take the conversation")
    ((admin_id,),) = rows
    return ProfileId(UUID(str(admin_id)))


def _has_users_row(customer_id: CustomerId) -> bool:
    return bool(User.select().where(User.id == customer_id).exists())


def _give_back(admin_id: ProfileId) -> None:
    """A choice that made no conversation goes back (best effort: a choice left in flight only
    steers the balance; the conversation counts stay exact)."""
    try:
        with backend.write_transaction():
            _RELEASE_CHOICE.execute(admin_id)
    except Exception:
        log.warning("a choice of admin %s stays in flight", admin_id)


def _insert_conversation(customer_id: CustomerId, admin_id: ProfileId) -> ConversationId | None:
    """The new conversation's id; None (nothing inserted) when the admin is no admin now."""
    rows = _INSERT_CONVERSATION.rows(customer_id, admin_id)
    return ConversationId(UUID(str(rows[0][0]))) if rows else None


# conversation_assignment_totals' one reason: handed over by `helpline admin remove --reassign`
ADMIN_REMOVED = "admin_removed"
_COUNT_ONE_LESS = PreparedQuery(
    lambda admin: AdminConversationCount.update(
        conversation_count=AdminConversationCount.conversation_count - 1
    ).where(AdminConversationCount.admin == admin, AdminConversationCount.conversation_count > 0)
)
_COUNT_CHOSEN = PreparedQuery(  # a first contact's choice, counted with its conversation
    lambda admin: AdminConversationCount.update(
        conversation_count=AdminConversationCount.conversation_count + 1,
        open_count=AdminConversationCount.open_count + 1,  # a new conversation is open
        choices_in_flight=Case(
            None, [(AdminConversationCount.choices_in_flight > 0, Count.choices_in_flight - 1)], 0
        ),
    ).where(AdminConversationCount.admin == admin)
)
_RELEASE_CHOICE = PreparedQuery(  # a first contact's choice that made no conversation
    lambda admin: AdminConversationCount.update(
        choices_in_flight=AdminConversationCount.choices_in_flight - 1
    ).where(AdminConversationCount.admin == admin, AdminConversationCount.choices_in_flight > 0)
)
_LOCK_COUNT = PreparedQuery(
    lambda admin: AdminConversationCount.insert(admin=admin, conversation_count=0).on_conflict(
        conflict_target=[AdminConversationCount.admin],
        update={Count.conversation_count: Count.conversation_count},
    )
)
_COUNT_ONE_MORE = PreparedQuery(
    lambda admin: AdminConversationCount.insert(admin=admin, conversation_count=1).on_conflict(
        conflict_target=[AdminConversationCount.admin],
        update={Count.conversation_count: Count.conversation_count + 1},
    )
)


@dataclass(frozen=True, slots=True)
class Reassignment:
    conversation: ConversationView
    previous_admin: ProfileId  # the same as the conversation's admin when nothing moved

    @property
    def moved(self) -> bool:
        return self.previous_admin != self.conversation.admin.id


@unit_of_work
def assign_conversation(conversation_id: ConversationId, admin_id: ProfileId) -> Reassignment:
    """Give the conversation to ``admin_id`` (an admin's profile); a no-op when it has it.

    The conversation's row is locked, the counts move with it, and both admins' inboxes hear
    of it once the transaction commits. Earlier messages keep their senders.
    """
    with backend.write_transaction():
        previous, customer, status = _conversation_parties(conversation_id)
        # Both admins' count rows, in id order (two hand-overs between the same admins never
        # lock them crosswise); the new admin's also keeps `helpline admin remove` from
        # clearing them between this check and the commit (repo/admins.py).
        if _is_admin(admin_id):  # so that only an admin's count row is made and locked
            for admin in sorted({previous, admin_id}, key=str):
                lock_count_of(admin)
        if not _is_admin(admin_id):  # again under the lock: a removal that committed first
            raise InvalidInput(f"adminId {admin_id} is not an admin's profile")
        if admin_id == customer:
            raise InvalidInput(
                f"adminId {admin_id} is this conversation's customer: an admin cannot be "
                "given their own conversation"
            )
        if previous != admin_id:
            _hand_over(conversation_id, previous, admin_id, is_open=status == "OPEN")
    found = _find_conversation(conversation_id)
    assert found is not None
    return Reassignment(found, previous)


def _conversation_parties(
    conversation_id: ConversationId,
) -> tuple[ProfileId, ProfileId, str]:
    """The conversation's admin, customer and status, its row locked."""
    query = Conversation.select(
        Conversation.admin, Conversation.customer, Conversation.status
    ).where(Conversation.id == conversation_id)
    found: Any = list(backend.for_update(query).tuples())
    if not found:
        raise ConversationNotFound(f"conversation {conversation_id} not found")
    ((admin, customer, status),) = found
    return ProfileId(UUID(str(admin))), ProfileId(UUID(str(customer))), str(status)


def _is_admin(profile_id: ProfileId) -> bool:
    return bool(Profile.select(Profile.is_admin).where(Profile.id == profile_id).scalar())


def _hand_over(
    conversation_id: ConversationId, previous: ProfileId, admin_id: ProfileId, *, is_open: bool
) -> None:
    """Inside a transaction that locked the conversation: move it and its counts."""
    (
        Conversation.update(admin=admin_id, updated_at=datetime.now(UTC))
        .where(Conversation.id == conversation_id)
        .execute()
    )
    _COUNT_ONE_LESS.execute(previous)
    _COUNT_ONE_MORE.execute(admin_id)
    if is_open:
        count_opened(previous, delta=-1)
        count_opened(admin_id, delta=1)
    events.conversation_reassigned(conversation_id, previous, admin_id)


@unit_of_work_once
def hand_over_conversations_of(admin_id: ProfileId, *, batch_size: int, reason: str) -> int:
    """Give up to ``batch_size`` of the admin's conversations to the others, by the rule, in
    one transaction; how many moved (0: none left). Run it until it returns 0. The batch is
    added to ``reason``'s row of conversation_assignment_totals in the same transaction, so
    the total counts each conversation moved once, however often the command is rerun."""
    with backend.write_transaction():
        query = (
            Conversation.select(Conversation.id, Conversation.customer, Conversation.status)
            .where(Conversation.admin == admin_id)
            .order_by(Conversation.id)
            .limit(batch_size)
        )
        rows: Any = backend.for_update(query).tuples()
        batch: list[tuple[Any, Any, Any]] = list(rows)
        for conversation_id, customer_id, status in batch:
            # open and snoozed ones by the balance rule, resolved ones evenly
            resolved = status == "RESOLVED"
            chosen = _choose_admin(CustomerId(customer_id), leaving=admin_id, evenly=resolved)
            _COUNT_ONE_LESS.execute(admin_id)
            if status == "OPEN":
                count_opened(admin_id, delta=-1)
                count_opened(chosen, delta=1)
            (
                Conversation.update(admin=chosen, updated_at=datetime.now(UTC))
                .where(Conversation.id == conversation_id)
                .execute()
            )
            events.conversation_reassigned(ConversationId(conversation_id), admin_id, chosen)
        if batch:
            totals = ConversationAssignmentTotal
            totals.insert(reason=reason, total=len(batch)).on_conflict(
                conflict_target=[totals.reason], update={totals.total: totals.total + len(batch)}
            ).execute()
    return len(batch)


@unit_of_work
def assignment_totals() -> dict[str, int]:
    """conversation_assignment_totals: conversations handed over outside the servers, by
    reason (every reason the table allows, 0 until the first)."""
    rows: Any = ConversationAssignmentTotal.select(
        ConversationAssignmentTotal.reason, ConversationAssignmentTotal.total
    ).tuples()
    return {ADMIN_REMOVED: 0} | {str(reason): int(total) for reason, total in rows}
