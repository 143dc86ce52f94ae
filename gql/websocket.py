"""GraphQL over WebSocket (graphql-transport-ws): the token comes in connection_init.

A missing or bad token closes the socket with 4401, an unknown role with 4403, and so does
the token's expiry while the socket is open (the client reconnects with a fresh token).
Each subscribe re-checks the caller's admin status. A subscriber too slow to keep up gets
SUBSCRIBER_TOO_SLOW and its socket is closed with 1013 (try again later). Only
subscriptions run here; queries and mutations go over HTTP, where they run off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from graphql import GraphQLError, OperationType, get_operation_ast, parse
from starlette.concurrency import run_in_threadpool
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    Message,
    SubscribeMessage,
)

from gql.auth import ANON, LEEWAY_SECONDS, AuthenticationFailed, Caller
from gql.authz import KNOWN_ROLES
from gql.errors import BAD_USER_INPUT
from gql.realtime import SubscriberTooSlow
from repo.config import Settings

UNAUTHORIZED, FORBIDDEN, TRY_AGAIN_LATER = 4401, 4403, 1013
MAX_TOKENS = Settings().max_tokens


def bearer_token(payload: dict[str, Any]) -> str | None:
    """The Authorization value of a connection_init payload (its own or under "headers")."""
    for source in (payload, payload.get("headers")):
        if isinstance(source, dict):
            for key in ("Authorization", "authorization"):
                if isinstance(value := source.get(key), str):
                    return value
    return None


class HelplineTransportWSHandler(BaseGraphQLTransportWSHandler[dict[str, Any], None]):
    expiry: asyncio.Task[None] | None = None
    too_slow: bool = False
    closing: bool = False
    counted_present: bool = False

    async def handle(self) -> None:
        try:
            await super().handle()
        finally:
            if self.expiry is not None:
                self.expiry.cancel()
            caller = self.context.get("caller")
            if self.counted_present and isinstance(caller, Caller):
                await self.view.presence.leave(caller)  # type: ignore[attr-defined]

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        payload = message.get("payload") or {}
        if isinstance(payload, dict) and not self.connection_init_received:
            try:
                caller = await run_in_threadpool(
                    self.view.authenticator.authenticate,  # type: ignore[attr-defined]
                    bearer_token(payload),
                )
            except AuthenticationFailed as exc:
                await self.websocket.close(code=UNAUTHORIZED, reason=str(exc)[:100])
                return
            if caller.role == ANON:
                await self.websocket.close(code=UNAUTHORIZED, reason="authentication required")
                return
            if caller.role not in KNOWN_ROLES:
                await self.websocket.close(code=FORBIDDEN, reason="Forbidden")
                return
            self.context["caller"] = caller
            self.expiry = asyncio.create_task(self._close_when_expired(caller))
            self.counted_present = await self.view.presence.join(caller)  # type: ignore[attr-defined]
        await super().handle_connection_init(message)

    async def _close_when_expired(self, caller: Caller) -> None:
        assert caller.expires_at is not None  # a verified token always has one
        await asyncio.sleep(max(0.0, caller.expires_at + LEEWAY_SECONDS - time.time()))
        with contextlib.suppress(Exception):  # the socket may be closing already
            await self.websocket.close(code=UNAUTHORIZED, reason="token expired")

    async def send_message(self, message: Message) -> None:
        if self.closing:
            return  # the client reconnects and subscribes again
        try:
            async with asyncio.timeout(self.view.send_timeout_s):  # type: ignore[attr-defined]
                await super().send_message(message)
        except TimeoutError:  # the client stopped reading and every buffer between is full
            await self._close_too_slow()
            return
        if message["type"] == "next" and any(
            (error.get("extensions") or {}).get("code") == SubscriberTooSlow.code
            for error in message["payload"].get("errors") or ()
        ):
            self.too_slow = True

    async def run_operation(self, operation: Operation[dict[str, Any], None]) -> None:
        await super().run_operation(operation)
        if self.too_slow:  # its queue overflowed: free the socket rather than fall further behind
            await self._close_too_slow()

    async def _close_too_slow(self) -> None:
        self.closing = True
        with contextlib.suppress(Exception):  # it may be closing already
            await self.websocket.close(code=TRY_AGAIN_LATER, reason="subscriber too slow")

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if self.connection_acknowledged and not _is_subscription(message):
            error = GraphQLError(
                "only subscriptions run over WebSocket; send queries and mutations over HTTP",
                extensions={"code": BAD_USER_INPUT},
            )
            await self.send_message(
                {"id": message["id"], "type": "error", "payload": [error.formatted]}
            )
            return
        caller = self.context.get("caller")
        if isinstance(caller, Caller):  # an admin may have been demoted since the last one
            self.context["caller"] = caller.rechecked()
        await super().handle_subscribe(message)


def _is_subscription(message: SubscribeMessage) -> bool:
    """True unless the document surely holds a query or mutation (bad documents: let it say)."""
    try:
        payload = message["payload"]
        document = parse(payload["query"], max_tokens=MAX_TOKENS)  # bounded, like over HTTP
        operation = get_operation_ast(document, payload.get("operationName"))
    except (GraphQLError, KeyError, TypeError):
        return True
    return operation is None or operation.operation == OperationType.SUBSCRIPTION
