"""Users and their profiles' roles."""

from __future__ import annotations

from dataclasses import dataclass

from peewee import fn

from repo.ids import CustomerId
from repo.models import Profile, User
from repo.prepared import PreparedQuery
from repo.units import unit_of_work


@dataclass(frozen=True, slots=True)
class NewUser:
    """What a verified sign-up token says about a user Helpline has no row for yet."""

    email: str
    full_name: str | None = None


@unit_of_work
def is_admin(user_id: CustomerId) -> bool:
    """True when the user's profile is an admin's (no profile: False)."""
    return bool(Profile.select(Profile.is_admin).where(Profile.id == user_id).scalar() or False)


def ensure_profile(customer_id: CustomerId) -> bool:
    """Create the customer's profile from its users row if missing; True when created."""
    return bool(_ENSURE_PROFILE.execute(customer_id).rowcount)


def profile_name() -> object:
    """The name a profile made from a users row gets: full_name, else email, else 'User'."""
    return fn.COALESCE(fn.NULLIF(User.full_name, ""), User.email, "User")


_ENSURE_PROFILE = PreparedQuery(
    lambda customer: Profile.insert_from(
        User.select(User.id, profile_name(), fn.COALESCE(User.profile_picture_url, "")).where(
            User.id == customer
        ),
        fields=[Profile.id, Profile.name, Profile.avatar_url],
    ).on_conflict(conflict_target=[Profile.id], action="NOTHING")
)
