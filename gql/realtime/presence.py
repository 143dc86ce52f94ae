"""Admins' presence: this process counts its admins' sockets and keeps their rows beating."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from uuid import uuid4

from anyio import to_thread

from repo import presence
from repo.ids import ProfileId

log = logging.getLogger("helpline.realtime")


class Presence:
    """Admins are online while they hold a socket to any live process (see repo.presence).

    This process counts its admins' sockets and writes the counts through on join and leave;
    a heartbeat rewrites them every ``heartbeat_s`` (healing a write that failed) and expires
    the rows of processes that stopped beating, so a crashed worker's admins go offline.
    The process's presence writes take turns (``turn``), so they land in the order made.
    """

    def __init__(self, *, heartbeat_s: float, ttl_s: float) -> None:
        self.process_id = uuid4()
        self.heartbeat_s, self.ttl_s = heartbeat_s, ttl_s
        self.sockets: dict[ProfileId, int] = {}
        self.turn = asyncio.Lock()
        self.beating: asyncio.Task[None] | None = None
        self.stopping = asyncio.Event()

    def start(self) -> None:
        self.beating = asyncio.get_running_loop().create_task(self._beat_forever())

    async def stop(self) -> None:
        self.stopping.set()
        if self.beating is not None:  # a beat in flight finishes: its thread holds a connection
            await self.beating
        async with self.turn:
            self.sockets.clear()
            try:
                await to_thread.run_sync(presence.depart, self.process_id)
            except Exception as exc:  # the rows expire on the other processes' heartbeats
                log.warning("presence not cleared at shutdown: %s", type(exc).__name__)

    async def join(self, profile_id: ProfileId | None, is_admin: Callable[[], bool]) -> bool:
        """Count a socket if ``is_admin()`` (a blocking lookup, run in a worker thread) says
        its caller is an admin; True when counted (``leave`` later)."""
        if profile_id is None:
            return False
        try:
            if not await to_thread.run_sync(is_admin):
                return False
        except Exception as exc:  # the socket works on; only its presence goes uncounted
            log.warning("presence not counted: %s", type(exc).__name__)
            return False
        await self._change(profile_id, +1)
        return True

    async def leave(self, profile_id: ProfileId) -> None:
        """Uncount a socket that ``join`` counted."""
        await self._change(profile_id, -1)

    async def _change(self, profile: ProfileId, delta: int) -> None:
        async with self.turn:
            sockets = self.sockets.get(profile, 0) + delta
            if sockets > 0:
                self.sockets[profile] = sockets
            else:
                self.sockets.pop(profile, None)
            try:
                await to_thread.run_sync(presence.record, self.process_id, profile, sockets)
            except Exception as exc:  # the next heartbeat writes the counts again
                log.warning("presence not updated: %s", type(exc).__name__)

    async def _beat_forever(self) -> None:
        while True:
            async with self.turn:
                try:
                    await to_thread.run_sync(
                        functools.partial(
                            presence.heartbeat,
                            self.process_id,
                            dict(self.sockets),
                            ttl_s=self.ttl_s,
                        )
                    )
                except Exception as exc:
                    log.warning("presence heartbeat failed: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.heartbeat_s)
                return
