"""Column lists and row builders shared by the queries that return profiles."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import peewee

from repo.ids import ProfileId
from repo.views import ProfileView


def profile_columns(profile: Any) -> list[peewee.Field]:
    """The columns of a ProfileView, from ``profile`` (the Profile model or an alias of it)."""
    return [profile.id, profile.name, profile.avatar_url, profile.is_admin, profile.is_online]


PROFILE_WIDTH = 5


def profile_from(row: Sequence[Any], start: int) -> ProfileView:
    """Build a ProfileView from the PROFILE_WIDTH columns of ``row`` beginning at ``start``."""
    pid, name, avatar_url, is_admin, is_online = row[start : start + PROFILE_WIDTH]
    return ProfileView(ProfileId(pid), name, avatar_url, bool(is_admin), bool(is_online))
