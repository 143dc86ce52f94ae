"""HTTP middleware that keeps a hostile or eager client from exhausting the server: body size
and requests in flight."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gql.graphql.errors import RETRY_AFTER_S
from gql.http.pipeline import head_of
from gql.http.responses import REQUEST_ID_HEADER, refusal
from gql.observability.metrics import REQUESTS_SHED


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """Answer 413 to a request whose body is larger than ``max_bytes``, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = refusal(413, f"request body larger than {self.max_bytes} bytes")
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


@dataclass
class InFlight:
    """HTTP requests this process is answering now, and how many it may (shared with tests)."""

    limit: int
    count: int = 0


class AtCapacity(Exception):
    """A request's body arrived while every slot was taken."""


class ConcurrencyLimit:
    """Answer 503 at once when ``in_flight.limit`` HTTP requests are already being answered.

    An overload then sheds load instead of queueing without end: a queued request would wait
    for the database pool (DB_POOL_TIMEOUT) while clients time out and retry, which only adds
    load. A request takes its slot once its body has arrived (GET at once), so clients that
    send headers and then nothing hold no slot. WebSockets have their own limit
    (WS_MAX_CONNECTIONS); probes and metrics are never shed, so an overloaded fleet stays in
    its load balancer and in view.
    """

    def __init__(
        self,
        app: ASGIApp,
        in_flight: InFlight,
        exempt: tuple[str, ...] = ("/live", "/ready", "/metrics"),
    ) -> None:
        self.app = app
        self.in_flight = in_flight
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        in_flight = self.in_flight
        admitted = False

        def admit() -> None:
            nonlocal admitted
            if in_flight.count >= in_flight.limit:
                raise AtCapacity
            in_flight.count += 1  # one event loop per process: no lock needed
            admitted = True

        async def admitting_receive() -> Message:
            message = await receive()
            if not admitted and message["type"] == "http.request" and not message.get("more_body"):
                admit()  # the whole body is here: the request is ready to be worked on
            return message

        try:
            if scope["method"] in ("GET", "HEAD"):
                admit()
            await self.app(scope, admitting_receive, send)
        except AtCapacity:
            REQUESTS_SHED.inc()
            request_id = head_of(scope).request_id
            response = refusal(503, "the server is at capacity; retry shortly")
            response.headers.update(
                {"Retry-After": str(RETRY_AFTER_S), REQUEST_ID_HEADER: request_id}
            )
            await response(scope, receive, send)
        finally:
            if admitted:
                in_flight.count -= 1
