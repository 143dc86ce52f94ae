"""The WebSocket transport's settings: how many sockets and subscriptions, per process and per
caller, how long a socket may take to introduce itself, and how its messages are queued."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from repo.config import read_bool, read_int, read_seconds


@dataclass(frozen=True, slots=True)
class WebSocketSettings:
    ws_max_connections: int = 1000
    ws_max_subscriptions: int = 20
    ws_max_sockets_per_caller: int = 10
    ws_max_subscriptions_per_caller: int = 50
    ws_max_pending_per_address: int = 20
    ws_init_timeout_s: float = 5.0
    ws_queue_size: int = 256
    ws_send_timeout_s: float = 10.0
    ws_per_message_deflate: bool = False
    presence_heartbeat_s: float = 15.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WebSocketSettings:
        defaults = cls()
        return cls(
            ws_max_connections=read_int(
                env, "WS_MAX_CONNECTIONS", defaults.ws_max_connections, minimum=1
            ),
            ws_max_subscriptions=read_int(
                env, "WS_MAX_SUBSCRIPTIONS", defaults.ws_max_subscriptions, minimum=1
            ),
            ws_max_sockets_per_caller=read_int(
                env, "WS_MAX_SOCKETS_PER_CALLER", defaults.ws_max_sockets_per_caller, minimum=1
            ),
            ws_max_subscriptions_per_caller=read_int(
                env,
                "WS_MAX_SUBSCRIPTIONS_PER_CALLER",
                defaults.ws_max_subscriptions_per_caller,
                minimum=1,
            ),
            ws_max_pending_per_address=read_int(
                env, "WS_MAX_PENDING_PER_ADDRESS", defaults.ws_max_pending_per_address, minimum=1
            ),
            ws_init_timeout_s=read_seconds(
                env, "WS_INIT_TIMEOUT_SECONDS", defaults.ws_init_timeout_s
            ),
            ws_queue_size=read_int(env, "WS_QUEUE_SIZE", defaults.ws_queue_size, minimum=1),
            ws_send_timeout_s=read_seconds(
                env, "WS_SEND_TIMEOUT_SECONDS", defaults.ws_send_timeout_s
            ),
            ws_per_message_deflate=read_bool(env, "WS_PER_MESSAGE_DEFLATE"),
            presence_heartbeat_s=read_seconds(
                env, "PRESENCE_HEARTBEAT_SECONDS", defaults.presence_heartbeat_s
            ),
        )

    @property
    def presence_ttl_s(self) -> float:
        """How long a process's presence rows outlive its last heartbeat (it crashed)."""
        return 3 * self.presence_heartbeat_s
