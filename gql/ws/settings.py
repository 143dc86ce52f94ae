"""The WebSocket transport's settings: how many sockets and subscriptions, per process and per
caller, how long a socket may take to introduce itself, and how its messages are queued."""

from __future__ import annotations

from dataclasses import dataclass

from repo.config import variable


@dataclass(frozen=True, slots=True)
class WebSocketSettings:
    ws_max_connections: int = variable("WS_MAX_CONNECTIONS", 1000, minimum=1)
    ws_max_subscriptions: int = variable("WS_MAX_SUBSCRIPTIONS", 20, minimum=1)
    ws_max_sockets_per_caller: int = variable("WS_MAX_SOCKETS_PER_CALLER", 10, minimum=1)
    ws_max_subscriptions_per_caller: int = variable(
        "WS_MAX_SUBSCRIPTIONS_PER_CALLER", 50, minimum=1
    )
    ws_max_pending_per_address: int = variable("WS_MAX_PENDING_PER_ADDRESS", 20, minimum=1)
    ws_init_timeout_s: float = variable("WS_INIT_TIMEOUT_SECONDS", 5.0)
    ws_queue_size: int = variable("WS_QUEUE_SIZE", 256, minimum=1)
    ws_send_timeout_s: float = variable("WS_SEND_TIMEOUT_SECONDS", 10.0)
    ws_per_message_deflate: bool = variable("WS_PER_MESSAGE_DEFLATE", False)
    presence_heartbeat_s: float = variable("PRESENCE_HEARTBEAT_SECONDS", 15.0)

    @property
    def presence_ttl_s(self) -> float:
        """How long a process's presence rows outlive its last heartbeat (it crashed)."""
        return 3 * self.presence_heartbeat_s
