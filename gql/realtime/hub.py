"""The per-process hub: committed events fanned out to this process's subscribers, in batches.

The delivery loop takes everything pending at once (up to MAX_BATCH events) and reads the
database once for the whole batch, in one worker thread: the batch's messages for the
conversations followed here (one query), the inbox items of the batch's conversations with
every local inbox reader's unread counts (three queries), and which of the readers that must
still be admins are (one query). Every subscriber then gets what is its own from that.

Bounds, per subscriber (WS_QUEUE_SIZE, ``queue_size``):
- a ``messageAdded`` follower holds at most ``queue_size`` messages; one more and it drops
  them for a single RESYNC and catches up from the database where it stands (nothing lost,
  nothing twice);
- an inbox reader holds at most one update per conversation (the latest replaces the one
  pending; the conversation and its last message are read once for every reader, so an entry
  holds little of its own), for at most INBOX_PENDING_LIMIT conversations; one more and it is
  ended (OVERFLOW). A console that keeps reading never meets it, however busy the desk: what
  it has pending is the conversations that changed since its last frame went out.
A client that stops reading is closed by the WebSocket's send timeout (gql/ws/websocket.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from anyio import to_thread

from repo import events
from repo.ids import ConversationId, MessageId, ProfileId
from repo.inbox import InboxChanges, InboxItem, inbox_changes
from repo.messages import find_messages
from repo.users import admins_among
from repo.views import MessageView

log = logging.getLogger("helpline.realtime")

RESYNC = "resync"  # catch up from the database (the listener reconnected, or a queue overflowed)
OVERFLOW = "overflow"  # an inbox reader's pending updates outgrew its bound: it ends
DEMOTED = "demoted"  # the reader is no longer an admin: it ends
INBOUND_LIMIT = 10_000  # events heard and not yet delivered; beyond, everyone catches up
MAX_BATCH = 1_000  # events delivered together (one database read)
INBOX_PENDING_LIMIT = 10_000  # conversations an inbox reader may have pending


@dataclass(eq=False)
class Follower:
    """A ``messageAdded`` subscription: the conversation's messages, in commit order.

    ``admin_id``: a reader who reads only as an admin, re-checked with every batch.
    """

    conversation_id: ConversationId
    limit: int
    admin_id: ProfileId | None = None
    queue: deque[MessageView | str] = field(default_factory=deque)
    ended: str | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, item: MessageView | str) -> None:
        if len(self.queue) >= self.limit:  # drop what it holds: the database has it all
            self.queue.clear()
            item = RESYNC
        if item == RESYNC and self.queue and self.queue[-1] == RESYNC:
            return
        self.queue.append(item)
        self.wake.set()

    def end(self, reason: str) -> None:
        self.ended = reason
        self.queue.clear()
        self.wake.set()

    async def next(self) -> MessageView | str:
        """The next message, RESYNC, or why it ended (DEMOTED)."""
        while not self.queue and self.ended is None:
            self.wake.clear()
            await self.wake.wait()
        return self.ended if self.ended is not None else self.queue.popleft()


@dataclass(eq=False)
class InboxReader:
    """An ``inboxUpdated`` subscription: the latest state of each conversation that changed.

    ``reader_id``: whose unread counts (None: each conversation's admin, for service callers);
    ``admin_id``: a reader who must still be an admin; ``queue_owner``: only the conversations
    this admin holds, or that just left them (assignedToMe); ``statuses``: only conversations
    in these statuses, or that just left them (None: every status); ``watching``: one
    conversation, and only when its status or its admin changes (``conversationUpdated``).
    """

    limit: int
    reader_id: ProfileId | None = None
    admin_id: ProfileId | None = None
    queue_owner: ProfileId | None = None
    statuses: frozenset[str] | None = None
    watching: ConversationId | None = None
    pending: dict[ConversationId, InboxItem] = field(default_factory=dict)
    ended: str | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(
        self, item: InboxItem, taken_from: Iterable[ProfileId] = (), was: Iterable[str] = ()
    ) -> None:
        """Queue the item's latest state if this reader's filters take it, or it just left
        them: ``taken_from``, the admins it was handed over from; ``was``, the statuses it
        left."""
        taken_from, was = tuple(taken_from), tuple(was)
        if self.watching is not None and (
            item.conversation.id != self.watching or not (taken_from or was)
        ):
            return
        owner = self.queue_owner
        if owner is not None and owner != item.conversation.admin.id and owner not in taken_from:
            return
        wanted = self.statuses
        if wanted is not None and item.conversation.status not in wanted and wanted.isdisjoint(was):
            return
        conversation_id = item.conversation.id
        replaced = self.pending.pop(conversation_id, None)  # the latest state, at the back
        if replaced is None and len(self.pending) >= self.limit:
            self.end(OVERFLOW)
            return
        self.pending[conversation_id] = item
        self.wake.set()

    def end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
        self.pending.clear()
        self.wake.set()

    async def next(self) -> InboxItem | str:
        """The oldest pending update, or why it ended (RESYNC, OVERFLOW, DEMOTED)."""
        while not self.pending and self.ended is None:
            self.wake.clear()
            await self.wake.wait()
        if self.ended is not None:
            return self.ended
        conversation_id = next(iter(self.pending))
        return self.pending.pop(conversation_id)


@dataclass(frozen=True)
class BatchRead:
    """What one batch needed from the database."""

    messages: dict[MessageId, MessageView]
    inbox: InboxChanges | None
    admins: set[ProfileId]


def read_batch(
    message_ids: list[MessageId],
    conversation_ids: list[ConversationId],
    reader_ids: set[ProfileId],
    admin_ids: set[ProfileId],
) -> BatchRead:
    """One batch's reads, in one worker thread: each empty request costs nothing."""
    return BatchRead(
        find_messages(message_ids),
        inbox_changes(conversation_ids, reader_ids) if conversation_ids else None,
        admins_among(admin_ids),
    )


class Hub:
    """Per-process fan-out of committed events to local subscribers, in commit order."""

    def __init__(self, *, queue_size: int, ordered: bool = True) -> None:
        """``ordered``: notifications arrive in commit order (PostgreSQL's NOTIFY does)."""
        self.queue_size = queue_size
        self.ordered = ordered
        self.by_conversation: dict[ConversationId, set[Follower]] = {}
        self.everyone: set[InboxReader] = set()
        # conversationUpdated: kept apart, so a widget's watcher costs nothing per message and
        # is offered only its own conversation's status and admin changes
        self.watching: dict[ConversationId, set[InboxReader]] = {}
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
    def follow(
        self, conversation_id: ConversationId, *, admin_id: ProfileId | None = None
    ) -> Iterator[Follower]:
        """Register a ``messageAdded`` subscription while the block runs."""
        follower = Follower(conversation_id, self.queue_size, admin_id)
        group = self.by_conversation.setdefault(conversation_id, set())
        group.add(follower)
        try:
            yield follower
        finally:
            group.discard(follower)
            if not group:
                self.by_conversation.pop(conversation_id, None)

    @contextlib.contextmanager
    def read_inbox(
        self,
        *,
        reader_id: ProfileId | None,
        admin_id: ProfileId | None = None,
        queue_owner: ProfileId | None = None,
        statuses: frozenset[str] | None = None,
        watching: ConversationId | None = None,
    ) -> Iterator[InboxReader]:
        """Register an ``inboxUpdated`` (or, ``watching``, a ``conversationUpdated``)
        subscription while the block runs."""
        reader = InboxReader(
            INBOX_PENDING_LIMIT, reader_id, admin_id, queue_owner, statuses, watching
        )
        group = self.everyone if watching is None else self.watching.setdefault(watching, set())
        group.add(reader)
        try:
            yield reader
        finally:
            group.discard(reader)
            if watching is not None and not group:
                self.watching.pop(watching, None)

    @property
    def subscriber_count(self) -> int:
        following = sum(len(group) for group in self.by_conversation.values())
        return len(self.everyone) + following + sum(len(g) for g in self.watching.values())

    def take(self, event: events.Event) -> None:
        """Something was committed (called on the event loop): delivered in commit order."""
        try:
            self.inbound.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("notification backlog full; subscribers will catch up from the database")
            self.resync()

    def resync(self) -> None:
        """Everyone catches up from the database (inbox readers: they are asked to refetch)."""
        for group in self.by_conversation.values():
            for follower in group:
                follower.offer(RESYNC)
        for reader in [*self.everyone, *(w for g in self.watching.values() for w in g)]:
            reader.end(RESYNC)

    async def _deliver_forever(self) -> None:
        while True:
            batch = [await self.inbound.get()]
            while len(batch) < MAX_BATCH and not self.inbound.empty():
                batch.append(self.inbound.get_nowait())
            try:
                await self._deliver(batch)
            except Exception:
                log.exception("could not deliver %d events; subscribers will catch up", len(batch))
                self.resync()

    async def _deliver(self, batch: list[events.Event]) -> None:
        # Who needs what is fixed before the read: a subscriber that registers meanwhile
        # starts with a catch-up from the database, which sees all of this batch.
        stored = [e for e in batch if isinstance(e, events.MessageStored)]
        followers = {
            e.conversation_id: list(self.by_conversation.get(e.conversation_id, ())) for e in stored
        }
        followers = {conversation: group for conversation, group in followers.items() if group}
        readers = list(self.everyone)
        watched = list(
            dict.fromkeys(
                e.conversation_id
                for e in batch
                if isinstance(e, events.StatusChanged | events.ConversationReassigned)
                and e.conversation_id in self.watching
            )
        )
        watchers = [w for conversation in watched for w in self.watching[conversation]]
        if not followers and not readers and not watchers:
            return
        wanted = [e.message_id for e in stored if e.conversation_id in followers and self.ordered]
        touched = list(dict.fromkeys(e.conversation_id for e in batch)) if readers else watched
        admin_ids = {f.admin_id for group in followers.values() for f in group if f.admin_id}
        admin_ids |= {r.admin_id for r in [*readers, *watchers] if r.admin_id}
        read = BatchRead({}, None, set())
        if wanted or touched or admin_ids:
            read = await to_thread.run_sync(
                functools.partial(
                    read_batch,
                    wanted,
                    touched,
                    {r.reader_id for r in readers if r.reader_id},
                    admin_ids,
                )
            )
        for event in stored:
            for follower in followers.get(event.conversation_id, ()):
                if follower.admin_id is not None and follower.admin_id not in read.admins:
                    follower.end(DEMOTED)
                    continue
                # Without a guaranteed order (SQLite's after-commit hand-offs can overtake
                # each other) or without the message, followers catch up from the database.
                follower.offer(read.messages.get(event.message_id, RESYNC))
        if read.inbox is not None:
            self._deliver_inbox(batch, [*readers, *watchers], read.inbox, read.admins)

    @staticmethod
    def _deliver_inbox(
        batch: list[events.Event],
        readers: list[InboxReader],
        changes: InboxChanges,
        admins: set[ProfileId],
    ) -> None:
        taken_from: dict[ConversationId, set[ProfileId]] = {}
        left: dict[ConversationId, set[str]] = {}
        for event in batch:
            if isinstance(event, events.ConversationReassigned):
                taken_from.setdefault(event.conversation_id, set()).add(event.previous_admin)
            elif isinstance(event, events.StatusChanged):
                left.setdefault(event.conversation_id, set()).add(event.previous)
        by_id = {c.id: c for c in changes.conversations}
        last_changed = list(dict.fromkeys(reversed([e.conversation_id for e in batch])))
        order = [by_id[c] for c in reversed(last_changed) if c in by_id]  # each once, in order
        for reader in readers:
            if reader.admin_id is not None and reader.admin_id not in admins:
                reader.end(DEMOTED)
                continue
            for conversation in order:
                reader.offer(
                    changes.item(conversation, reader.reader_id),
                    taken_from.get(conversation.id, ()),
                    left.get(conversation.id, ()),
                )
