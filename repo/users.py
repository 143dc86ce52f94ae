"""Users and their profiles' roles."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from peewee import Case, fn

from repo.ids import CustomerId, ProfileId
from repo.models import Profile, User
from repo.prepared import PreparedQuery
from repo.units import unit_of_work

# A profile's text, as a users row gives it (the sign-up trigger's copy: migration 0008).
# Sign-up never fails on long text: a name is cut to its cap, a longer avatar URL (which cut
# would point elsewhere) gives no avatar.
MAX_NAME_FROM_FULL_NAME = 200  # characters of users.full_name
MAX_NAME_FROM_EMAIL = 320  # characters of users.email (RFC 3696: 64 + 1 + 255)
MAX_AVATAR_URL = 2048  # characters of users.profile_picture_url


@dataclass(frozen=True, slots=True)
class NewUser:
    """What a verified sign-up token says about a user Helpline has no row for yet."""

    email: str
    full_name: str | None = None


@unit_of_work
def is_admin(user_id: CustomerId) -> bool:
    """True when the user's profile is an admin's (no profile: False)."""
    return bool(Profile.select(Profile.is_admin).where(Profile.id == user_id).scalar() or False)


@unit_of_work
def admins_among(profile_ids: Collection[ProfileId]) -> set[ProfileId]:
    """Which of these profiles are admins' (one query, however many)."""
    if not profile_ids:
        return set()
    rows: Any = (
        Profile.select(Profile.id)
        .where(Profile.id.in_(list(profile_ids)), Profile.is_admin)
        .tuples()
    )
    return {ProfileId(UUID(str(profile_id))) for (profile_id,) in rows}


def ensure_profile(customer_id: CustomerId) -> bool:
    """Create the customer's profile from its users row if missing; True when created."""
    return bool(_ENSURE_PROFILE.execute(customer_id).rowcount)


def profile_name() -> object:
    """The name a profile made from a users row gets: full_name, else email, else 'User',
    cut to MAX_NAME_FROM_FULL_NAME or MAX_NAME_FROM_EMAIL characters."""
    return fn.COALESCE(
        fn.SUBSTR(fn.NULLIF(User.full_name, ""), 1, MAX_NAME_FROM_FULL_NAME),
        fn.SUBSTR(User.email, 1, MAX_NAME_FROM_EMAIL),
        "User",
    )


def profile_avatar_url() -> object:
    """The avatar a profile made from a users row gets: profile_picture_url when it has at
    most MAX_AVATAR_URL characters, else none ('')."""
    return Case(
        None,
        [(fn.LENGTH(User.profile_picture_url) <= MAX_AVATAR_URL, User.profile_picture_url)],
        "",
    )


_ENSURE_PROFILE = PreparedQuery(
    lambda customer: Profile.insert_from(
        User.select(User.id, profile_name(), profile_avatar_url()).where(User.id == customer),
        fields=[Profile.id, Profile.name, Profile.avatar_url],
    ).on_conflict(conflict_target=[Profile.id], action="NOTHING")
)
