"""Who is online: sockets counted per (profile, server process), kept fresh by heartbeats.

`profiles.is_online` is true while some live process holds a socket for the profile. Each
process counts its own sockets in its own row, so one worker closing its last socket cannot
mark offline an admin whose other socket sits on another worker. Every process refreshes its
rows' `seen_at` (`heartbeat`); rows a process stopped refreshing (it crashed or was killed)
expire after `ttl_s`, and whichever process sweeps them next sets the flag right.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

from peewee import SQL, fn

from repo import backend
from repo.ids import ProfileId
from repo.models import Presence, Profile
from repo.units import unit_of_work


@unit_of_work
def record(process_id: UUID, profile_id: ProfileId, sockets: int) -> None:
    """This process now holds ``sockets`` sockets for the profile (0: none left)."""
    with backend.write_transaction():
        if _lock_profiles([profile_id]):
            _write_row(process_id, profile_id, sockets)
            _refresh_online([profile_id])


@unit_of_work
def heartbeat(process_id: UUID, held: Mapping[ProfileId, int], *, ttl_s: float) -> int:
    """Write this process's sockets as they are and expire silent processes' rows.

    ``held``: the sockets this process holds now, by profile. Writing the whole truth each
    time heals a write that failed while the database was away. Profiles are locked first,
    in id order, as ``record`` does, so heartbeats and joins never wait on each other in a
    cycle. Returns how many rows of other processes expired.
    """
    with backend.write_transaction():
        mine = Presence.process_id == process_id
        stale = (Presence.seen_at < _ago(ttl_s)) & ~mine
        listed: Any = Presence.select(Presence.profile).where(stale | mine).tuples()
        locked = _lock_profiles([*held, *(row[0] for row in listed)])
        if not locked:
            return 0
        ours = Presence.profile.in_(locked)
        expired = _delete_returning_profiles(stale & ours)
        for profile_id in locked:  # a deleted profile is not locked: nothing is written for it
            _write_row(process_id, profile_id, held.get(ProfileId(profile_id), 0))
        _refresh_online(locked)
        return len(expired)


@unit_of_work
def depart(process_id: UUID) -> None:
    """This process is stopping: its sockets are gone."""
    with backend.write_transaction():
        listed: Any = Presence.select(Presence.profile).where(Presence.process_id == process_id)
        locked = _lock_profiles([row[0] for row in listed.tuples()])
        if locked:
            Presence.delete().where(Presence.process_id == process_id).execute()
            _refresh_online(locked)


def _lock_profiles(profile_ids: Iterable[UUID]) -> list[UUID]:
    """Lock the profiles that exist, in id order; return their ids.

    Every presence change of a profile happens under its row lock (SQLite's write lock
    already serializes them), so a change on one process never computes "nobody holds a
    socket" from a snapshot that misses another process's committed change.
    """
    ids = sorted(set(profile_ids), key=str)
    if not ids:
        return []
    query = Profile.select(Profile.id).where(Profile.id.in_(ids)).order_by(Profile.id)
    rows: Any = backend.for_update(query).tuples()
    return [UUID(str(row[0])) for row in rows]


def _write_row(process_id: UUID, profile_id: UUID, sockets: int) -> None:
    row = (Presence.profile == profile_id) & (Presence.process_id == process_id)
    if sockets <= 0:
        Presence.delete().where(row).execute()
        return
    (
        Presence.insert(profile=profile_id, process_id=process_id, sockets=sockets, seen_at=_now())
        .on_conflict(
            conflict_target=[Presence.profile, Presence.process_id],
            update={Presence.sockets: sockets, Presence.seen_at: _now()},
        )
        .execute()
    )


def _delete_returning_profiles(where: Any) -> list[UUID]:
    rows: Any = Presence.select(Presence.profile).where(where).tuples()
    profiles = [UUID(str(row[0])) for row in rows]
    if profiles:
        Presence.delete().where(where).execute()
    return profiles


def _refresh_online(locked: list[UUID]) -> None:
    """Set is_online of profiles already locked from their presence rows."""
    held = Presence.select(SQL("1")).where(Presence.profile == Profile.id)
    Profile.update(is_online=fn.EXISTS(held)).where(Profile.id.in_(locked)).execute()


_now = backend.now  # the database's clock: processes on skewed machines agree
_ago = backend.ago
