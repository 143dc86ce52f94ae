"""The subscriptions' generators: what each subscriber of the hub (gql/realtime/hub.py) is sent.

``messageAdded``: a conversation's messages from now on, in commit order, each once, catching
up from the database whenever the hub says RESYNC (the listener reconnected, or the
subscriber's queue overflowed). ``inboxUpdated``: the latest state of each conversation that
changed, with the reader's unread count. An admin demoted since subscribing ends with
FORBIDDEN.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import TypeVar
from uuid import UUID

from anyio import to_thread

from gql.graphql import authz
from gql.graphql.errors import ApiError
from gql.realtime.hub import DEMOTED, OVERFLOW, RESYNC, Follower, Hub, InboxReader
from repo.backoff import Backoff
from repo.errors import DatabaseUnavailable
from repo.ids import ConversationId, ProfileId
from repo.inbox import InboxItem
from repo.messages import messages_after, newest_position
from repo.views import MessageView

log = logging.getLogger("helpline.realtime")
T = TypeVar("T")
# jittered: the subscriptions that lost the database together do not all come back for it
# together (each try holds a worker thread while it connects)
CATCH_UP_BACKOFF = Backoff(first_s=0.1, cap_s=5.0)


class SubscriberTooSlow(ApiError):
    """Raised into an inbox subscription whose pending updates outgrew their bound."""

    code = "SUBSCRIBER_TOO_SLOW"

    def __init__(self) -> None:
        super().__init__("this subscription fell too far behind and was ended; subscribe again")


class Resubscribe(ApiError):
    """The listener was interrupted: an inbox subscription cannot replay what it missed."""

    code = "RESUBSCRIBE"

    def __init__(self) -> None:
        super().__init__("live updates were interrupted; refetch the inbox and subscribe again")


async def until_answered(work: Callable[..., T], *args: object) -> T:
    """``work(*args)`` in a worker thread, run again until the database answers it.

    For reads that keep a live subscription going: while there is no database (a restart, a
    failover with no primary yet) the subscription waits, with back-off, and carries on from
    where it was once one answers, instead of ending and leaving its client to notice.
    """
    attempt = 1
    while True:
        try:
            return await to_thread.run_sync(functools.partial(work, *args))
        except DatabaseUnavailable:
            if attempt == 1:
                log.warning("database unavailable for %s; waiting for it", work.__name__)
            await asyncio.sleep(CATCH_UP_BACKOFF.delay_s(attempt))
            attempt += 1


async def follow(
    follower: Follower,
    conversation_id: ConversationId,
    cursor: tuple[datetime, UUID] | None,
    *,
    still_admin: Callable[[], bool] | None = None,
) -> AsyncIterator[MessageView]:
    """The conversation's new messages in send order, each once, catching up after a resync.

    ``still_admin``: asked (in a worker thread) before each catch-up, for a reader who reads
    only as an admin; the hub checks the messages it delivers itself.
    """
    while True:
        item = await follower.next()
        if item == DEMOTED:
            raise authz.demoted()
        if item == RESYNC:
            if still_admin is not None and not await until_answered(still_admin):
                raise authz.demoted()
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


async def live_messages(
    hub: Hub,
    conversation_id: ConversationId,
    *,
    admin_id: ProfileId | None = None,
    still_admin: Callable[[], bool] | None = None,
    position: Callable[[ConversationId], tuple[datetime, UUID] | None] = newest_position,
) -> AsyncIterator[MessageView]:
    """Messages stored in the conversation from now on, in send order, each once.

    Read where the conversation stands, then register, then catch up from that point: a
    message committed in between is neither lost nor delivered twice. ``admin_id`` and
    ``still_admin``: a reader who reads only as an admin, re-checked by the hub with each
    batch and by ``still_admin`` before each catch-up.
    """
    cursor = await to_thread.run_sync(position, conversation_id)
    with hub.follow(conversation_id, admin_id=admin_id) as follower:
        follower.offer(RESYNC)
        async for message in follow(follower, conversation_id, cursor, still_admin=still_admin):
            yield message


async def inbox_updates(reader: InboxReader) -> AsyncIterator[InboxItem]:
    """The latest state of each conversation that changed, as the reader sees it."""
    while True:
        item = await reader.next()
        if item == OVERFLOW:
            raise SubscriberTooSlow
        if item == RESYNC:
            raise Resubscribe
        if item == DEMOTED:
            raise authz.demoted()
        assert isinstance(item, InboxItem)
        yield item
        await asyncio.sleep(0)
