"""Admins: the profiles that answer conversations."""

from __future__ import annotations

from typing import Any

from repo.errors import CustomerNotFound
from repo.ids import CustomerId, ProfileId
from repo.models import AdminConversationCount, Profile, User
from repo.rows import profile_columns, profile_from
from repo.units import unit_of_work, write_transaction
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
