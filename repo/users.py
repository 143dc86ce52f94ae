"""Users and their profiles' roles."""

from __future__ import annotations

from dataclasses import dataclass

from repo.db import unit_of_work
from repo.ids import CustomerId
from repo.models import Profile


@dataclass(frozen=True, slots=True)
class NewUser:
    """What a verified sign-up token says about a user Helpline has no row for yet."""

    email: str
    full_name: str | None = None


@unit_of_work
def is_admin(user_id: CustomerId) -> bool:
    """True when the user's profile is an admin's (no profile: False)."""
    return bool(Profile.select(Profile.is_admin).where(Profile.id == user_id).scalar() or False)
