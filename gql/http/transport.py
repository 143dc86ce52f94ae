"""The HTTP/1.1 transport `helpline serve` runs: uvicorn's httptools protocol with the bounds it
lacks on what a client may send before the app sees a request, and on idle connections.

- A request's head (request line and headers) is counted as it arrives, before httptools
  buffers it: past MAX_HEADER_BYTES it is answered 431, a URL past MAX_REQUEST_LINE_BYTES 414,
  more than MAX_HEADERS headers 431. A process holds no more of a head than that (give or take
  one read, for a head pipelined behind another request).
- A head must arrive within HEADER_TIMEOUT_SECONDS of the connection opening, or of its first
  byte on a kept-alive connection (uvicorn's keep-alive timeout bounds the wait before it); a
  body within BODY_TIMEOUT_SECONDS of its head. Past them the client gets 408, or, when it has
  sent nothing at all, the connection is closed as an idle keep-alive one is.
- A process holds MAX_CONNECTIONS connections: beyond them, each new one closes the connection
  that has waited longest on its client (idle since its last request, or a head or body still
  arriving). Idle connections cannot lock requests out, and a probe always gets in. Requests
  being answered are bounded by the app (MAX_CONCURRENT_REQUESTS) and WebSockets by
  WS_MAX_CONNECTIONS; neither is ever closed to make room.

Per request, the cost is two callbacks that call uvicorn's and a few comparisons; a timer is
set only for a head or a body that does not arrive in one read.

A refusal is a raw response (a GraphQL error body) with `Connection: close`, then the close.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from dataclasses import dataclass
from typing import Any, cast

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from gql.http.responses import refusal
from gql.http.settings import HttpSettings
from gql.observability.metrics import CONNECTIONS_CLOSED

# What a connection waits for, which sets its deadline: a request's head, its body, or nothing
# of ours (the app is answering, or the connection is idle between requests), or it is done
# (refused, closed, or handed to the WebSocket protocol).
_HEAD, _BODY, _ANSWERING, _DONE = range(4)


@dataclass(frozen=True, slots=True)
class TransportLimits:
    """The settings the transport enforces (picklable, for uvicorn's worker processes)."""

    max_request_line_bytes: int
    max_header_bytes: int
    max_headers: int
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: HttpSettings) -> TransportLimits:
        return cls(
            max_request_line_bytes=settings.max_request_line_bytes,
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            header_timeout_s=settings.header_timeout_s,
            body_timeout_s=settings.body_timeout_s,
            max_connections=settings.max_connections,
        )


def http_protocol(settings: HttpSettings) -> type[asyncio.Protocol]:
    """What `uvicorn.run(http=...)` takes: the protocol with these settings' limits bound.

    A partial, not a class: uvicorn pickles its config into each worker process, and a partial
    of a module-level class and a dataclass survives that with its limits. uvicorn only calls it.
    """
    limits = TransportLimits.from_settings(settings)
    return cast(type[asyncio.Protocol], functools.partial(BoundedHttpToolsProtocol, limits=limits))


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a request that broke a limit."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Per uvicorn server (one per process): its HTTP connections, least recently active first
# (opened, or a request's head received); a new one past MAX_CONNECTIONS closes the first whose
# request is not being answered.
_CONNECTIONS: weakref.WeakKeyDictionary[ServerState, dict[BoundedHttpToolsProtocol, None]] = (
    weakref.WeakKeyDictionary()
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with ``limits`` enforced (the module's docstring)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: TransportLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._max_head = limits.max_header_bytes
        self._max_line = limits.max_request_line_bytes
        self._by_activity = _CONNECTIONS.setdefault(server_state, {})
        self._phase = _HEAD
        self._deadline: asyncio.TimerHandle | None = None
        self._timed = _ANSWERING  # the phase the deadline runs for (_ANSWERING: none)
        self._counting = True  # a request's head is incomplete: bytes received count toward it
        self._head_bytes = 0
        self._heads = 0  # heads received on this connection

    # asyncio's protocol interface

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._make_room()
        self._by_activity[self] = None
        self._arm()  # the head's deadline runs from now

    def connection_lost(self, exc: Exception | None) -> None:
        self._done()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, with the head counted and parsed only up to its limit, and deadlines."""
        while self._phase != _DONE:
            rest = b""
            if self._counting:
                self._head_bytes += len(data)
                if self._head_bytes > self._max_head:
                    # The head passes its limit within this chunk: parse only what fits, so
                    # httptools never buffers more; if the head does not end there, refuse it.
                    room = len(data) - (self._head_bytes - self._max_head)
                    data, rest = data[:room], data[room:]
            heads = self._heads
            self._unset_keepalive_if_required()
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserCallbackError as exc:
                self._callback_failed(exc)
            except httptools.HttpParserError:
                self._bad_request()
            except httptools.HttpParserUpgrade:
                self._upgrade()
            phase = self._phase
            if phase == _ANSWERING and self._head_bytes:
                phase = self._phase = _HEAD  # a kept-alive connection's next head has begun
            if phase != self._timed or (phase == _BODY and self._heads != heads):
                self._arm()
            if not rest:
                return
            if self._heads == heads:  # the head did not end within its limit
                if self._phase != _DONE:
                    self._refuse(self._overlong())
                return
            data = rest

    def handle_websocket_upgrade(self) -> None:
        self._done()  # the socket is the WebSocket protocol's from here
        super().handle_websocket_upgrade()

    # httptools' parser callbacks

    def on_headers_complete(self) -> None:
        if len(self.url) > self._max_line:
            raise _Refused("request_line_too_long")
        if len(self.headers) > self.limits.max_headers:
            raise _Refused("too_many_headers")
        self._counting = False
        self._heads += 1
        self._phase = _BODY
        by_activity = self._by_activity
        by_activity.pop(self, None)
        by_activity[self] = None  # the most recently active now
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._counting = True
        self._head_bytes = 0
        self._phase = _ANSWERING

    # the bounds

    def _upgrade(self) -> None:
        if self._should_upgrade():
            self.handle_websocket_upgrade()
        else:
            self._unsupported_upgrade_warning()

    def _callback_failed(self, exc: httptools.HttpParserCallbackError) -> None:
        if isinstance(exc.__context__, _Refused):
            self._refuse(exc.__context__.reason)
        else:
            self._bad_request()

    def _overlong(self) -> str:
        """Why a head that passed MAX_HEADER_BYTES is refused."""
        return "request_line_too_long" if len(self.url) > self._max_line else "head_too_large"

    def _make_room(self) -> None:
        """Close the least recently active connection whose request is not being answered."""
        for victim in self._by_activity:
            cycle = victim.cycle
            if cycle is None or cycle.response_complete or cycle.more_body:
                CONNECTIONS_CLOSED.labels("evicted").inc()
                victim._close()
                return

    def _arm(self) -> None:
        """Start the deadline of what the connection now waits for (none while answering)."""
        phase = self._phase
        if phase == _DONE:
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._timed = phase
        if phase == _HEAD:
            self._deadline = self.loop.call_later(self.limits.header_timeout_s, self._expire)
        elif phase == _BODY:
            self._deadline = self.loop.call_later(self.limits.body_timeout_s, self._expire)

    def _expire(self) -> None:
        self._deadline = None
        if self._phase == _HEAD:
            if self._head_bytes == 0:  # it never sent a byte: nobody to answer
                CONNECTIONS_CLOSED.labels("header_timeout").inc()
                self._close()
            else:
                self._refuse("header_timeout")
        elif self._phase == _BODY:
            cycle = self.cycle
            if cycle.response_started:  # the app answered early: the answer cannot change
                CONNECTIONS_CLOSED.labels("body_timeout").inc()
                self._close()
                return
            cycle.disconnected = True  # the app's receive() ends, its response goes nowhere
            cycle.message_event.set()
            self._refuse("body_timeout")

    def _refuse(self, reason: str) -> None:
        """Answer a broken limit with a raw response, and close."""
        CONNECTIONS_CLOSED.labels(reason).inc()
        cycle = self.cycle
        if self.pipeline or (
            cycle is not None and not cycle.response_complete and not cycle.disconnected
        ):
            self._close()  # an earlier request's response is due: no answer can go before it
            return
        status, message = self._refusal(reason)
        body = refusal(status, message).body
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(
            b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % len(body)
        )
        self.transport.write(b"".join(head) + body)
        self._close()

    def _refusal(self, reason: str) -> tuple[int, str]:
        limits = self.limits
        return {
            "head_too_large": (431, f"request headers larger than {limits.max_header_bytes} bytes"),
            "too_many_headers": (431, f"more than {limits.max_headers} request headers"),
            "request_line_too_long": (
                414,
                f"request URL longer than {limits.max_request_line_bytes} bytes",
            ),
            "header_timeout": (
                408,
                f"request headers not received within {limits.header_timeout_s:g} s",
            ),
            "body_timeout": (408, f"request body not received within {limits.body_timeout_s:g} s"),
        }[reason]

    def _bad_request(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self._done()
        self.send_400_response(msg)

    def _close(self) -> None:
        self._done()
        self.transport.close()

    def _done(self) -> None:
        """Read no more requests here: never closed for room, no deadline."""
        self._phase = _DONE
        self._by_activity.pop(self, None)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
