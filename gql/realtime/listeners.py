"""What feeds the hub: one listener per process, never one per subscriber.

PostgreSQL: the process's one LISTEN connection (repo/listener.py owns it), read without
blocking the event loop (its socket is watched by the loop). If it drops, it reconnects by
itself (with the shared back-off) and every subscriber catches up from the database, so
nothing is lost and nothing arrives twice. SQLite (one process): after-commit callbacks.
"""

from __future__ import annotations

import asyncio
import logging

from anyio import to_thread

from gql.realtime.hub import Hub
from repo import events
from repo.backoff import Backoff
from repo.errors import DatabaseUnavailable
from repo.listener import ListenConnection

log = logging.getLogger("helpline.realtime")

RECONNECT_BACKOFF = Backoff(first_s=0.1, cap_s=5.0)


class LocalListener:
    """SQLite: in-process after-commit callbacks, handed to the event loop."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        events.add_local_listener(self._on_commit)

    async def stop(self) -> None:
        events.remove_local_listener(self._on_commit)

    def _on_commit(self, event: events.Event) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.hub.take, event)


class PostgresListener:
    """Reads the process's one LISTEN connection (repo/listener.py) from the event loop without
    blocking it, and reconnects with back-off when it drops."""

    def __init__(self, hub: Hub, database_url: str) -> None:
        self.hub = hub
        self.connection = ListenConnection(database_url)
        self.fd: int | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.reconnecting: asyncio.Task[None] | None = None
        self.stopped = False
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        try:
            await self._connect()
        except DatabaseUnavailable as exc:
            log.warning("listener could not connect (%s); retrying", exc)
            self._schedule_reconnect()

    async def stop(self) -> None:
        self.stopped = True
        if self.reconnecting is not None:
            self.reconnecting.cancel()
        self._drop()

    @property
    def backend_pid(self) -> int | None:
        return self.connection.backend_pid

    async def _connect(self) -> None:
        fd = await to_thread.run_sync(self.connection.open)
        assert self.loop is not None
        self.fd = fd
        self.loop.add_reader(fd, self._on_readable)
        self.connected.set()
        log.info("listening on %s", events.CHANNEL)

    def _on_readable(self) -> None:
        heard = self.connection.drain()
        if heard is None:
            log.warning("listener connection lost; reconnecting")
            self._drop()
            self._schedule_reconnect()
            return
        for event in heard:
            self.hub.take(event)

    def _drop(self) -> None:
        self.connected.clear()
        if self.fd is not None and self.loop is not None:
            # by the descriptor kept at connect time: a closed connection has no fileno()
            self.loop.remove_reader(self.fd)
            self.fd = None
        self.connection.close()

    def _schedule_reconnect(self) -> None:
        if not self.stopped and (self.reconnecting is None or self.reconnecting.done()):
            assert self.loop is not None
            self.reconnecting = self.loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        attempt = 1
        while not self.stopped:
            await asyncio.sleep(RECONNECT_BACKOFF.delay_s(attempt))
            try:
                await self._connect()
            except DatabaseUnavailable:
                attempt += 1
                continue
            self.hub.resync()  # whatever was sent while we were away comes from the database
            return
