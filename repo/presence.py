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

from repo.db import is_sqlite, unit_of_work, write_transaction
from repo.ids import ProfileId
from repo.models import Presence, Profile


@unit_of_work
def join(process_id: UUID, profile_id: ProfileId) -> None:
    """One more socket for the profile on this process: it is online."""
    with write_transaction():
        if not _lock_profile(profile_id):
            return
        (
            Presence.insert(profile=profile_id, process_id=process_id, sockets=1, seen_at=_now())
            .on_conflict(
                conflict_target=[Presence.profile, Presence.process_id],
                update={Presence.sockets: Presence.sockets + 1, Presence.seen_at: _now()},
            )
            .execute()
        )
        _refresh_online([profile_id])


@unit_of_work
def leave(process_id: UUID, profile_id: ProfileId) -> None:
    """One socket fewer on this process; offline once no live process holds one."""
    with write_transaction():
        if not _lock_profile(profile_id):
            return
        mine = (Presence.profile == profile_id) & (Presence.process_id == process_id)
        Presence.delete().where(mine & (Presence.sockets <= 1)).execute()
        Presence.update(sockets=Presence.sockets - 1).where(mine).execute()
        _refresh_online([profile_id])


@unit_of_work
def heartbeat(process_id: UUID, held: Mapping[ProfileId, int], *, ttl_s: float) -> int:
    """Write this process's sockets as they are and expire silent processes' rows.

    ``held``: the sockets this process holds now, by profile. Writing the whole truth each
    time heals a join or leave that failed while the database was away. Returns how many
    rows of other processes expired.
    """
    with write_transaction():
        stale = (Presence.seen_at < _ago(ttl_s)) & (Presence.process_id != process_id)
        expired = _delete_returning_profiles(stale)
        gone = Presence.process_id == process_id
        if held:
            gone &= Presence.profile.not_in(list(held))
        dropped = _delete_returning_profiles(gone)
        for profile_id, sockets in sorted(held.items(), key=lambda item: str(item[0])):
            (
                Presence.insert(
                    profile=profile_id, process_id=process_id, sockets=sockets, seen_at=_now()
                )
                .on_conflict(
                    conflict_target=[Presence.profile, Presence.process_id],
                    update={Presence.sockets: sockets, Presence.seen_at: _now()},
                )
                .execute()
            )
        _refresh_online([*expired, *dropped, *held])
        return len(expired)


@unit_of_work
def depart(process_id: UUID) -> None:
    """This process is stopping: its sockets are gone."""
    with write_transaction():
        _refresh_online(_delete_returning_profiles(Presence.process_id == process_id))


def _delete_returning_profiles(where: Any) -> list[UUID]:
    rows: Any = Presence.select(Presence.profile).where(where).tuples()
    profiles = [UUID(str(row[0])) for row in rows]
    if profiles:
        Presence.delete().where(where).execute()
    return profiles


def _lock_profile(profile_id: ProfileId) -> bool:
    """Serialize presence changes of one profile (FOR UPDATE; SQLite's write lock already does).

    Without it, a leave on one process could compute "nobody holds a socket" from a snapshot
    that misses a join committing on another process, and mark a connected admin offline.
    """
    query = Profile.select(Profile.id).where(Profile.id == profile_id)
    if not is_sqlite():
        query = query.for_update()
    return query.scalar() is not None


def _refresh_online(profile_ids: Iterable[ProfileId | UUID]) -> None:
    """Set is_online from the presence rows, after locking the profiles in a fixed order.

    The update runs after the lock is held, so its snapshot includes every join that
    committed before (a statement that waited for a lock would not see them).
    """
    ids = sorted(set(profile_ids), key=str)
    if not ids:
        return
    lock = Profile.select(Profile.id).where(Profile.id.in_(ids)).order_by(Profile.id)
    if not is_sqlite():
        list(lock.for_update())
    held = Presence.select(SQL("1")).where(Presence.profile == Profile.id)
    Profile.update(is_online=fn.EXISTS(held)).where(Profile.id.in_(ids)).execute()


def _now() -> object:
    """The database's clock, so processes on machines with skewed clocks agree."""
    if is_sqlite():
        return fn.strftime("%Y-%m-%d %H:%M:%f", "now")
    return fn.now()


def _ago(seconds: float) -> object:
    if is_sqlite():
        return fn.strftime("%Y-%m-%d %H:%M:%f", "now", f"-{seconds:.3f} seconds")
    return fn.now() - SQL("make_interval(secs => %s)", (seconds,))
