"""Live messages: one listener per process feeds a hub that fans out to local subscribers.

PostgreSQL: a single LISTEN connection per process (never one per subscriber; repo/listener.py
owns it), read without blocking the event loop (its socket is watched by the loop).
If it drops, it reconnects by itself and every subscriber catches up from the database, so
nothing is lost and nothing arrives twice. SQLite (one process): after-commit callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar
from uuid import UUID, uuid4

from anyio import to_thread

from gql.graphql.auth import Caller
from gql.graphql.errors import ApiError
from repo import events, presence
from repo.errors import DatabaseUnavailable
from repo.ids import ConversationId, ProfileId
from repo.listener import ListenConnection
from repo.messages import find_message, messages_after, newest_position
from repo.views import MessageView

log = logging.getLogger("helpline.realtime")

RESYNC = "resync"  # the listener reconnected: catch up from the database
OVERFLOW = "overflow"  # the subscriber fell too far behind: end its subscription
Item = MessageView | str | events.ConversationReassigned
MAX_RECONNECT_DELAY_S = 5.0
FIRST_RETRY_DELAY_S = 0.1
T = TypeVar("T")
INBOUND_LIMIT = 10_000


@dataclass(eq=False)
class Subscriber:
    """One subscription's queue; ``conversation_id`` None means every conversation (inbox)."""

    conversation_id: ConversationId | None
    queue: asyncio.Queue[Item]
    closed: bool = field(default=False)

    def offer(self, item: Item) -> None:
        if self.closed:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            while not self.queue.empty():  # free what it holds; it must resubscribe
                self.queue.get_nowait()
            self.queue.put_nowait(OVERFLOW)
            self.closed = True

    async def next(self) -> Item:
        return await self.queue.get()


class Hub:
    """Per-process fan-out of stored messages to local subscribers, in commit order."""

    def __init__(self, *, queue_size: int, ordered: bool = True) -> None:
        """``ordered``: notifications arrive in commit order (PostgreSQL's NOTIFY does)."""
        self.queue_size = queue_size
        self.ordered = ordered
        self.by_conversation: dict[ConversationId, set[Subscriber]] = {}
        self.everyone: set[Subscriber] = set()
        self.inbound: asyncio.Queue[events.Event] = asyncio.Queue(INBOUND_LIMIT)
        self.worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.worker = asyncio.get_running_loop().create_task(self._deliver_forever())

    async def stop(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker

    @contextlib.contextmanager
    def subscribe(self, conversation_id: ConversationId | None) -> Iterator[Subscriber]:
        subscriber = Subscriber(conversation_id, asyncio.Queue(self.queue_size))
        group = (
            self.everyone
            if conversation_id is None
            else self.by_conversation.setdefault(conversation_id, set())
        )
        group.add(subscriber)
        try:
            yield subscriber
        finally:
            group.discard(subscriber)
            if conversation_id is not None and not group:
                self.by_conversation.pop(conversation_id, None)

    @property
    def subscriber_count(self) -> int:
        return len(self.everyone) + sum(len(group) for group in self.by_conversation.values())

    def take(self, event: events.Event) -> None:
        """Something was committed (called on the event loop): delivered in commit order."""
        try:
            self.inbound.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("notification backlog full; subscribers will catch up from the database")
            self.resync()

    def resync(self) -> None:
        for subscriber in self._all():
            subscriber.offer(RESYNC)

    def _all(self) -> list[Subscriber]:
        return [*self.everyone, *(s for group in self.by_conversation.values() for s in group)]

    async def _deliver_forever(self) -> None:
        while True:
            event = await self.inbound.get()
            if isinstance(event, events.ConversationReassigned):  # for the inboxes only
                for subscriber in list(self.everyone):
                    subscriber.offer(event)
                continue
            conversation_id, message_id = event.conversation_id, event.message_id
            followers = list(self.by_conversation.get(conversation_id, ()))
            if not followers and not self.everyone:
                continue
            try:
                message = await to_thread.run_sync(find_message, message_id)
            except Exception:
                log.exception("could not load message %s; subscribers will catch up", message_id)
                message = None
            # Without a guaranteed order (SQLite's after-commit hand-offs can overtake each
            # other) or without the message, followers catch up from the database instead.
            for subscriber in followers:
                subscriber.offer(message if message is not None and self.ordered else RESYNC)
            if message is not None:
                for subscriber in list(self.everyone):
                    subscriber.offer(message)


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
    blocking it, and reconnects with backoff when it drops."""

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
        delay = 0.1
        while not self.stopped:
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except DatabaseUnavailable:
                delay = min(delay * 2, MAX_RECONNECT_DELAY_S)
                continue
            self.hub.resync()  # whatever was sent while we were away comes from the database
            return


class SubscriberTooSlow(ApiError):
    """Raised into a subscription whose queue overflowed: it ends; subscribe again."""

    code = "SUBSCRIBER_TOO_SLOW"

    def __init__(self) -> None:
        super().__init__("this subscription fell too far behind and was ended; subscribe again")


async def follow(
    subscriber: Subscriber,
    conversation_id: ConversationId,
    cursor: tuple[datetime, UUID] | None,
) -> AsyncIterator[MessageView]:
    """The conversation's new messages in send order, each once, catching up after a resync."""
    while True:
        item = await subscriber.next()
        if item == OVERFLOW:
            raise SubscriberTooSlow
        if item == RESYNC:
            batch = await until_answered(messages_after, conversation_id, cursor)
            while batch:
                for message in batch:
                    cursor = (message.created_at, message.id)
                    yield message
                batch = await until_answered(messages_after, conversation_id, cursor)
            continue
        assert isinstance(item, MessageView)
        if cursor is None or (item.created_at, item.id) > cursor:
            cursor = (item.created_at, item.id)
            yield item
        await asyncio.sleep(0)  # take turns: one busy subscription must not starve the others


async def until_answered(work: Callable[..., T], *args: object) -> T:
    """``work(*args)`` in a worker thread, run again until the database answers it.

    For reads that keep a live subscription going: while there is no database (a restart, a
    failover with no primary yet) the subscription waits, with backoff, and carries on from
    where it was once one answers, instead of ending and leaving its client to notice.
    """
    delay = FIRST_RETRY_DELAY_S
    while True:
        try:
            return await to_thread.run_sync(functools.partial(work, *args))
        except DatabaseUnavailable:
            if delay == FIRST_RETRY_DELAY_S:
                log.warning("database unavailable for %s; waiting for it", work.__name__)
            # jittered: the subscriptions that lost the database together do not all come
            # back for it together (each try holds a worker thread while it connects)
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, MAX_RECONNECT_DELAY_S)


async def live_messages(
    hub: Hub,
    conversation_id: ConversationId,
    *,
    position: Callable[[ConversationId], tuple[datetime, UUID] | None] = newest_position,
) -> AsyncIterator[MessageView]:
    """Messages stored in the conversation from now on, in send order, each once.

    Read where the conversation stands, then register, then catch up from that point: a
    message committed in between is neither lost nor delivered twice.
    """
    cursor = await to_thread.run_sync(position, conversation_id)
    with hub.subscribe(conversation_id) as subscriber:
        subscriber.offer(RESYNC)
        async for message in follow(subscriber, conversation_id, cursor):
            yield message


class Resubscribe(ApiError):
    """The listener was interrupted: an inbox subscription cannot replay what it missed."""

    code = "RESUBSCRIBE"

    def __init__(self) -> None:
        super().__init__("live updates were interrupted; refetch the inbox and subscribe again")


async def follow_all(
    subscriber: Subscriber,
) -> AsyncIterator[tuple[ConversationId, ProfileId | None]]:
    """The conversation of every stored message or reassignment, as it comes, with the admin
    a reassignment took it from (None for a message)."""
    while True:
        item = await subscriber.next()
        if item == OVERFLOW:
            raise SubscriberTooSlow
        if item == RESYNC:
            raise Resubscribe
        if isinstance(item, events.ConversationReassigned):
            yield item.conversation_id, item.previous_admin
        else:
            assert isinstance(item, MessageView)
            yield item.conversation_id, None
        await asyncio.sleep(0)


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

    async def join(self, caller: Caller) -> bool:
        """Count the caller's socket if they are an admin; True when counted (leave later)."""
        if caller.user_id is None:
            return False
        try:
            if not await to_thread.run_sync(lambda: caller.is_admin):
                return False
        except Exception as exc:  # the socket works on; only its presence goes uncounted
            log.warning("presence not counted: %s", type(exc).__name__)
            return False
        await self._change(ProfileId(caller.user_id), +1)
        return True

    async def leave(self, caller: Caller) -> None:
        """Uncount a socket that ``join`` counted."""
        assert caller.user_id is not None
        await self._change(ProfileId(caller.user_id), -1)

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
