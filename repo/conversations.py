"""The admin conversation: one per customer, got or created in one atomic block."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import peewee

from repo.db import database, is_sqlite, settings, unit_of_work, write_transaction
from repo.errors import CustomerNotFound, NoAdminAvailable
from repo.ids import ConversationId, CustomerId, ProfileId
from repo.messages import post_message
from repo.models import Conversation, Profile, User
from repo.prepared import PreparedSelect
from repo.rows import PROFILE_WIDTH, profile_columns, profile_from
from repo.users import NewUser, ensure_profile
from repo.views import AdminConversation, ConversationView

Customer = Profile.alias("customer")
Admin = Profile.alias("admin")


@unit_of_work
def get_or_create_admin_conversation(
    customer_id: CustomerId, *, new_user: NewUser | None = None, known_missing: bool = False
) -> AdminConversation:
    """Return the customer's admin conversation, creating profile and conversation if missing.

    ``new_user`` (from a verified sign-up token) creates the missing ``users`` row first.
    ``known_missing``: the caller has just looked it up and found none, so go straight to
    the locked block (which looks again under the lock, so a racing creator is still seen).
    """
    if not known_missing and (found := _find_conversation_of(customer_id)):
        return AdminConversation(found, created=False, profile_created=False)
    if not is_sqlite():
        return _open_on_postgres(customer_id, new_user)
    with write_transaction():
        user_created = new_user is not None and _ensure_user(customer_id, new_user)
        profile_created = ensure_profile(customer_id) or user_created
        existing = _lock_profile(customer_id)
        if existing is None:
            admin_id = _choose_admin(customer_id)
            conversation_id = ConversationId(uuid4())
            Conversation.insert(id=conversation_id, customer=customer_id, admin=admin_id).execute()
            post_message(conversation_id, admin_id, settings().welcome_message)
        conversation = _find_conversation_of(customer_id)
        assert conversation is not None
    return AdminConversation(
        conversation, created=existing is None, profile_created=profile_created
    )


_OPEN_ON_POSTGRES = (
    "SELECT out_conversation, out_created, out_profile_created "
    "FROM helpline_open_conversation(%s, %s, %s, %s)"
)
_NO_USERS_ROW, _NO_ADMIN = "HL001", "HL002"  # the function's own SQLSTATEs (migration 0004)


def _open_on_postgres(customer_id: CustomerId, new_user: NewUser | None) -> AdminConversation:
    """The same steps as the SQLite block above, as one call (helpline_open_conversation).

    One round trip instead of about ten: the first contact's throughput is PostgreSQL's.
    """
    params = (
        str(customer_id),
        new_user.email if new_user else None,
        new_user.full_name if new_user else None,
        settings().welcome_message,
    )
    try:
        _, created, profile_created = database.execute_sql(_OPEN_ON_POSTGRES, params).fetchone()
    except peewee.DatabaseError as exc:
        sqlstate = getattr(exc.__cause__ or exc.__context__, "pgcode", None)
        if sqlstate == _NO_USERS_ROW:
            raise CustomerNotFound(f"customer {customer_id} not found: no users row") from None
        if sqlstate == _NO_ADMIN:
            raise NoAdminAvailable("no admin is available to take the conversation") from None
        raise
    conversation = _find_conversation_of(customer_id)
    assert conversation is not None
    return AdminConversation(conversation, created=created, profile_created=profile_created)


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


def _lock_profile(customer_id: CustomerId) -> ConversationId | None:
    """Lock the customer's profile row; return the conversation that exists by now, if any.

    Two statements on purpose: under READ COMMITTED a statement that waited for the lock
    still sees its old snapshot of other tables, so the conversation is looked up afterwards.
    """
    lock = Profile.select(Profile.id).where(Profile.id == customer_id)
    if not is_sqlite():
        lock = lock.for_update()
    if lock.scalar() is None:
        raise CustomerNotFound(f"customer {customer_id} not found: no users row")
    existing = Conversation.select(Conversation.id).where(Conversation.customer == customer_id)
    conversation_id = existing.scalar()
    return None if conversation_id is None else ConversationId(conversation_id)


def _choose_admin(customer_id: CustomerId) -> ProfileId:
    admin_id = (
        Profile.select(Profile.id)
        .where(Profile.is_admin, Profile.id != customer_id)
        .order_by(Profile.created_at, Profile.id)
        .limit(1)
        .scalar()
    )
    if admin_id is None:
        raise NoAdminAvailable("no admin is available to take the conversation")
    return ProfileId(admin_id)
