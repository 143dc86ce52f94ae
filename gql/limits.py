"""Limits that keep a hostile client from exhausting the server: body size, document shape."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionNode,
    ValidationRule,
)
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import ParserCache, ValidationCache

from gql.errors import RETRY_AFTER_S
from gql.metrics import REQUESTS_SHED
from gql.view import REQUEST_ID_HEADER, refusal, request_id_from

CACHEABLE_QUERY_CHARS = 8192


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
            request_id = request_id_from(Headers(scope=scope).get(REQUEST_ID_HEADER))
            response = refusal(503, "the server is at capacity; retry shortly")
            response.headers.update(
                {"Retry-After": str(RETRY_AFTER_S), REQUEST_ID_HEADER: request_id}
            )
            await response(scope, receive, send)
        finally:
            if admitted:
                in_flight.count -= 1


class OperationLimits:
    """Depth, alias and size limits computed once per fragment (a memoized walk).

    Strawberry's depth and alias limiters walk a fragment again at every spread, so a few
    hundred bytes of fragments spreading each other can pin a CPU for minutes before they
    answer. Here each fragment is measured once and spreads multiply its figures, so
    validation cost grows with the document's size, not with its expansion.
    """

    def __init__(self, *, max_depth: int, max_aliases: int, max_fields: int) -> None:
        self.max_depth = max_depth
        self.max_aliases = max_aliases
        self.max_fields = max_fields

    def rule(self) -> type[ValidationRule]:
        """A validation rule class; build it once (ValidationCache keys on the class)."""
        limits = self

        class OperationLimitsRule(ValidationRule):
            def enter_document(self, node: DocumentNode, *_args: object) -> None:
                fragments = {
                    d.name.value: d
                    for d in node.definitions
                    if isinstance(d, FragmentDefinitionNode)
                }
                measure = _Measure(fragments)
                for definition in node.definitions:
                    if isinstance(definition, OperationDefinitionNode):
                        name = definition.name.value if definition.name else "anonymous"
                        for message in limits.check(name, measure.selections(definition)):
                            self.report_error(GraphQLError(message, definition))

        return OperationLimitsRule

    def check(self, operation: str, figures: Figures) -> list[str]:
        errors = []
        if figures.depth > self.max_depth:
            errors.append(f"'{operation}' exceeds maximum operation depth of {self.max_depth}")
        if figures.aliases > self.max_aliases:
            errors.append(f"{figures.aliases} aliases found. Allowed: {self.max_aliases}")
        if figures.fields > self.max_fields:
            errors.append(
                f"'{operation}' selects {figures.fields} fields once fragments are expanded. "
                f"Allowed: {self.max_fields}"
            )
        return errors


@dataclass(frozen=True, slots=True)
class Figures:
    depth: int = 0  # introspection fields (__schema, __type) are not counted
    aliases: int = 0
    fields: int = 0

    def __add__(self, other: Figures) -> Figures:
        return Figures(
            max(self.depth, other.depth), self.aliases + other.aliases, self.fields + other.fields
        )


class _Measure:
    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments
        self.memo: dict[str, Figures] = {}
        self.visiting: set[str] = set()

    def selections(self, node: Any) -> Figures:
        total = Figures()
        for selection in node.selection_set.selections if node.selection_set else ():
            total = total + self._selection(selection)
        return total

    def _selection(self, selection: SelectionNode) -> Figures:
        if isinstance(selection, FieldNode):
            inner = self.selections(selection)
            introspection = selection.name.value.startswith("__")
            return Figures(
                depth=0 if introspection else inner.depth + 1,
                aliases=inner.aliases + (1 if selection.alias else 0),
                fields=inner.fields + 1,
            )
        if isinstance(selection, InlineFragmentNode):
            return self.selections(selection)
        if isinstance(selection, FragmentSpreadNode):
            return self._fragment(selection.name.value)
        return Figures()

    def _fragment(self, name: str) -> Figures:
        if name in self.memo:
            return self.memo[name]
        if name in self.visiting or name not in self.fragments:
            return Figures()  # cycles and unknown fragments are other rules' errors
        self.visiting.add(name)
        self.memo[name] = self.selections(self.fragments[name])
        self.visiting.discard(name)
        return self.memo[name]


class SmallDocumentParserCache(ParserCache):
    """Caches parsed documents, but only small ones: a cache of 1 MiB documents is a leak."""

    def on_parse(self) -> Iterator[None]:
        if len(self.execution_context.query or "") > CACHEABLE_QUERY_CHARS:
            yield  # Strawberry parses it, uncached
            return
        yield from super().on_parse()


class SmallDocumentValidationCache(ValidationCache):
    """Caches validation results of small documents only (errors can echo large literals)."""

    def on_validate(self) -> Iterator[None]:
        if len(self.execution_context.query or "") > CACHEABLE_QUERY_CHARS:
            yield
            return
        yield from super().on_validate()
