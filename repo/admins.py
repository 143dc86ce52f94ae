"""Admins: the profiles that answer conversations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from peewee import JOIN, fn

from repo import conversations
from repo.backend import write_transaction
from repo.errors import AdminHoldsConversations, CustomerNotFound, LastAdmin
from repo.ids import CustomerId, ProfileId
from repo.models import AdminConversationCount, Conversation, Profile, User
from repo.rows import profile_columns, profile_from
from repo.units import unit_of_work
from repo.users import ensure_profile
from repo.views import ProfileView


@unit_of_work
def make_admin(email: str) -> ProfileView:
    """Make the user with ``email`` an admin, creating their profile if it is missing."""
    with write_transaction():
        user_id = User.select(User.id).where(User.email == email).scalar()
        if user_id is None:
            raise CustomerNotFound(f"no user with email {email!r}")
        ensure_profile(CustomerId(user_id))
        Profile.update(is_admin=True).where(Profile.id == user_id).execute()
        row: Any = (
            Profile.select(*profile_columns(Profile)).where(Profile.id == user_id).tuples().get()
        )
    return profile_from(row, 0)


@unit_of_work
def assigned_conversation_count(profile_id: ProfileId) -> int:
    """How many conversations the profile holds as their admin (0 for none)."""
    count = (
        AdminConversationCount.select(AdminConversationCount.conversation_count)
        .where(AdminConversationCount.admin == profile_id)
        .scalar()
    )
    return int(count or 0)


@unit_of_work
def open_conversation_count(profile_id: ProfileId) -> int:
    """How many of those are OPEN (what a first contact balances on)."""
    count = (
        AdminConversationCount.select(AdminConversationCount.open_count)
        .where(AdminConversationCount.admin == profile_id)
        .scalar()
    )
    return int(count or 0)


@unit_of_work
def admin_profiles() -> list[ProfileView]:
    """Every admin's profile, oldest first (the order the assignment rule breaks ties in)."""
    rows: Any = (
        Profile.select(*profile_columns(Profile))
        .where(Profile.is_admin)
        .order_by(Profile.created_at, Profile.id)
        .tuples()
    )
    return [profile_from(row, 0) for row in rows]


@dataclass(frozen=True, slots=True)
class AdminSummary:
    id: ProfileId
    email: str
    name: str
    is_online: bool
    assigned_conversation_count: int


@unit_of_work
def list_admins() -> list[AdminSummary]:
    """Every admin with their email, presence and how many conversations they hold."""
    rows: Any = (
        Profile.select(
            Profile.id,
            User.email,
            Profile.name,
            Profile.is_online,
            fn.COALESCE(AdminConversationCount.conversation_count, 0),
        )
        .join(User, on=(User.id == Profile.id))
        .switch(Profile)
        .join(
            AdminConversationCount,
            JOIN.LEFT_OUTER,
            on=(AdminConversationCount.admin == Profile.id),
        )
        .where(Profile.is_admin)
        .order_by(Profile.created_at, Profile.id)
        .tuples()
    )
    return [
        AdminSummary(ProfileId(UUID(str(pid))), email, name, bool(online), int(count))
        for pid, email, name, online, count in rows
    ]


def remove_admin(
    email: str,
    *,
    reassign: bool,
    batch_size: int = 100,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Take admin rights from the user with ``email``; the conversations handed over.

    Refuses (nothing changed) when they are the last admin, or hold conversations and
    ``reassign`` is false. With ``reassign`` their conversations go to the other admins by
    the first contact's rule, ``batch_size`` per transaction, so an interrupted run can be
    run again; ``is_admin`` is cleared last. A user who is no admin: 0, nothing to do.
    """
    admin = _admin_to_remove(email, reassign=reassign)
    if admin is None:
        return 0
    moved = 0
    while True:
        while batch := conversations.hand_over_conversations_of(
            admin, batch_size=batch_size, reason=conversations.ADMIN_REMOVED
        ):
            moved += batch
            if progress is not None:
                progress(moved)
        if _clear_admin_when_empty(admin):  # a first contact may have chosen them meanwhile
            return moved


@unit_of_work
def _admin_to_remove(email: str, *, reassign: bool) -> ProfileId | None:
    row = (
        Profile.select(Profile.id, Profile.is_admin)
        .join(User, on=(User.id == Profile.id))
        .where(User.email == email)
        .tuples()
        .first()
    )
    if row is None:
        if User.select().where(User.email == email).exists():
            return None  # a user with no profile is no admin
        raise CustomerNotFound(f"no user with email {email!r}")
    profile_id, is_admin = ProfileId(UUID(str(row[0]))), bool(row[1])
    if not is_admin:
        return None
    others = Profile.select().where(Profile.is_admin, Profile.id != profile_id).count()
    if others == 0:
        raise LastAdmin(f"{email} is the last admin: add another first (helpline admin add)")
    held = Conversation.select().where(Conversation.admin == profile_id).count()
    if held and not reassign:
        raise AdminHoldsConversations(held)
    return profile_id


@unit_of_work
def _clear_admin_when_empty(admin: ProfileId) -> bool:
    """Clear is_admin unless a conversation arrived meanwhile (then: False, hand it over)."""
    with write_transaction():
        conversations.serialize_admin_choice()  # no first contact chooses them meanwhile
        # and one that chose them before either commits its conversation first (seen below)
        # or, once this commits, finds them no admin and chooses again
        conversations.lock_count_of(admin)
        if Conversation.select().where(Conversation.admin == admin).exists():
            return False
        # Again under the lock every removal takes: two removals at once each saw the other
        # as the admin who would remain.
        if not Profile.select().where(Profile.is_admin, Profile.id != admin).exists():
            raise LastAdmin("the last admin now (another was removed meanwhile): add one first")
        Profile.update(is_admin=False).where(Profile.id == admin).execute()
    return True
