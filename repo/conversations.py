"""The admin conversation: one per customer, got or created in one atomic block."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from peewee import fn

from repo.database import is_sqlite
from repo.errors import CustomerNotFound, NoAdminAvailable
from repo.ids import ConversationId, CustomerId, ProfileId
from repo.messages import post_message
from repo.models import Conversation, Profile, User
from repo.prepared import PreparedQuery, PreparedSelect
from repo.rows import PROFILE_WIDTH, profile_columns, profile_from
from repo.units import unit_of_work, write_transaction
from repo.users import NewUser, ensure_profile
from repo.views import AdminConversation, ConversationView

Customer = Profile.alias("customer")
Admin = Profile.alias("admin")


@unit_of_work
def get_or_create_admin_conversation(
    customer_id: CustomerId,
    *,
    welcome_message: str,
    new_user: NewUser | None = None,
    known_missing: bool = False,
) -> AdminConversation:
    """Return the customer's admin conversation, creating profile and conversation if missing.

    One atomic block, the same statements on both backends: ensure the profile, lock it, then
    one INSERT ... SELECT that looks for the conversation under the lock and, when there is
    none, inserts it with the admin it chooses; the admin's ``welcome_message`` (the first
    message of every new conversation); the conversation's read.
    ``new_user`` (from a verified sign-up token) creates the users row when there is none.
    ``known_missing``: the caller has just looked it up and found none, so go straight to
    the locked block (which looks again under the lock, so a racing creator is still seen).
    """
    if not known_missing and (found := _find_conversation_of(customer_id)):
        return AdminConversation(found, created=False, profile_created=False)
    with write_transaction():  # SQLite: BEGIN IMMEDIATE, its one write lock
        profile_created = ensure_profile(customer_id)
        if not _lock_profile(customer_id):  # no users row: a verified sign-up may add it
            if new_user is None or not _ensure_user(customer_id, new_user):
                raise CustomerNotFound(f"customer {customer_id} not found: no users row")
            profile_created = _lock_profile(customer_id)  # its trigger made the profile
        inserted = _insert_conversation_unless_one_exists(customer_id)
        if inserted is not None:
            conversation_id, admin_id = inserted
            post_message(conversation_id, admin_id, welcome_message)
        found = _find_conversation_of(customer_id)
        if found is None:  # none existed, and none could be inserted
            raise NoAdminAvailable("no admin is available to take the conversation")
    return AdminConversation(found, created=inserted is not None, profile_created=profile_created)


@unit_of_work
def find_admin_conversation(customer_id: CustomerId) -> ConversationView | None:
    """The customer's admin conversation, or None while there is none (never writes)."""
    return _find_conversation_of(customer_id)


@unit_of_work
def find_conversation_owner(conversation_id: ConversationId) -> CustomerId | None:
    """The customer of a conversation, or None when it does not exist."""
    customer_id = (
        Conversation.select(Conversation.customer)
        .where(Conversation.id == conversation_id)
        .scalar()
    )
    return None if customer_id is None else CustomerId(customer_id)


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
            *profile_columns(Customer),
            *profile_columns(Admin),
        )
        .join(Customer, on=(Conversation.customer == Customer.id))
        .switch(Conversation)
        .join(Admin, on=(Conversation.admin == Admin.id))
    )


def conversation_from(row: Any) -> ConversationView:
    conversation_id, created_at, updated_at, last_message_at = row[:4]
    return ConversationView(
        id=ConversationId(conversation_id),
        customer=profile_from(row, 4),
        admin=profile_from(row, 4 + PROFILE_WIDTH),
        created_at=created_at,
        updated_at=updated_at,
        last_message_at=last_message_at,
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
    return query if is_sqlite() else query.for_update()


_LOCK_PROFILE = PreparedSelect(_lock_query)
_INSERT_CONVERSATION = PreparedQuery(
    lambda customer: Conversation.insert_from(
        Profile.select(Customer.id, Admin.id)
        .from_(Customer, Admin)
        .where(
            Customer.id == customer,
            # looked for under the lock, by this statement itself: a statement that starts
            # after the lock was granted sees what a racer committed (READ COMMITTED)
            ~fn.EXISTS(Conversation.select(1).where(Conversation.customer == Customer.id)),
            # the oldest admin who is not the customer, chosen inside the insert
            Admin.is_admin,
            Admin.id != Customer.id,
        )
        .order_by(Admin.created_at, Admin.id)
        .limit(1),
        fields=[Conversation.customer, Conversation.admin],
    ).returning(Conversation.id, Conversation.admin)
)


def _lock_profile(customer_id: CustomerId) -> bool:
    """Lock the customer's profile row (False: there is none): racing first contacts of one
    customer queue here.

    PostgreSQL: ``SELECT ... FOR UPDATE``. SQLite has no row locks: the block's
    ``BEGIN IMMEDIATE`` already holds the database's one write lock.
    """
    return _LOCK_PROFILE.first(customer_id) is not None


def _insert_conversation_unless_one_exists(
    customer_id: CustomerId,
) -> tuple[ConversationId, ProfileId] | None:
    """Under the profile's lock: insert the customer's conversation with the oldest admin,
    unless the customer has one; the new conversation's id and admin, or None."""
    inserted = _INSERT_CONVERSATION.rows(customer_id)
    if not inserted:
        return None
    ((conversation_id, admin_id),) = inserted
    return ConversationId(UUID(str(conversation_id))), ProfileId(UUID(str(admin_id)))
