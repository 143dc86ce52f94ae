"""A small graphql-transport-ws client for tests (on the `websockets` library)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

PROTOCOL = "graphql-transport-ws"
GUARD_S = 10.0  # against hanging, never a speed assertion

SUBSCRIBE_MESSAGES = (
    "subscription ($id: UUID!) { messageAdded(conversationId: $id) { id content sender { id } } }"
)


def ws_url(graphql_url: str) -> str:
    return graphql_url.replace("http://", "ws://", 1)


class Subscription:
    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket

    @classmethod
    async def open(
        cls, url: str, token: str | None, *, max_queue: int = 16, source: str = "127.0.0.1"
    ) -> Subscription:
        """Connect and initialise; ``max_queue``: frames held unread before reading stops;
        ``source``: the loopback address it connects from (WS_MAX_PENDING_PER_ADDRESS bounds
        the sockets one address opens at once)."""
        socket = await connect(
            ws_url(url),
            subprotocols=[PROTOCOL],  # type: ignore[list-item]
            max_queue=max_queue,
            local_addr=(source, 0),
        )
        payload = {"Authorization": f"Bearer {token}"} if token else {}
        await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
        reply = json.loads(await asyncio.wait_for(socket.recv(), GUARD_S))
        assert reply["type"] == "connection_ack", reply
        return cls(socket)

    async def subscribe(
        self, conversation_id: str, operation_id: str = "1", *, query: str = SUBSCRIBE_MESSAGES
    ) -> None:
        await self.socket.send(
            json.dumps(
                {
                    "id": operation_id,
                    "type": "subscribe",
                    "payload": {"query": query, "variables": {"id": conversation_id}},
                }
            )
        )

    async def receive(self, timeout: float = GUARD_S) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.socket.recv(), timeout))
        return message

    async def next_message(self, timeout: float = GUARD_S) -> dict[str, Any]:
        """The next messageAdded payload (skipping pings)."""
        while True:
            message = await self.receive(timeout)
            if message["type"] == "ping":
                await self.socket.send(json.dumps({"type": "pong"}))
                continue
            assert message["type"] == "next", message
            data: dict[str, Any] = message["payload"]["data"]["messageAdded"]
            return data

    async def close(self) -> None:
        await self.socket.close()


async def close_code(url: str, payload: dict[str, Any]) -> int | None:
    """The close code the server answers a connection_init with ``payload``."""
    async with connect(ws_url(url), subprotocols=[PROTOCOL]) as socket:  # type: ignore[list-item]
        try:
            await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
            while True:
                await asyncio.wait_for(socket.recv(), GUARD_S)
        except Exception:
            pass
        return socket.close_code


async def until_flowing(
    sub: Subscription,
    probe: Callable[[], Awaitable[None]],
    *,
    is_probe: Callable[[dict[str, Any]], bool],
) -> None:
    """Send probes until one comes back (a subscription has no ack), then drain stragglers."""
    deadline = time.monotonic() + GUARD_S
    while True:
        await probe()
        try:
            assert is_probe(await sub.receive(timeout=0.3))
            break
        except TimeoutError:
            assert time.monotonic() < deadline, "the subscription never went live"
    while True:
        try:
            assert is_probe(await sub.receive(timeout=0.5))
        except TimeoutError:
            return
