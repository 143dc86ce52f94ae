"""GraphQL over WebSocket (graphql-transport-ws): the token comes in connection_init.

Close codes follow what graphql-ws's client does with them: a refusal that retrying cannot fix
(a missing or bad token, a role that may not use the API) closes with 4401, which it treats as
fatal, so the app hears of it at once; the token's expiry while the socket is open closes with
4403 (reason ``token expired``) LEEWAY_SECONDS after ``exp``, which it retries, calling the
app's ``connectionParams`` again for a fresh token. A malformed message (not JSON, or
nested deeper than the decoder goes; not an object; no known type; a bad id: ``envelope_problem``)
closes with 4400 and a few words of fixed text, as graphql-ws's own server does.
Each subscribe re-checks the caller's admin status. A client that stops reading is closed with
1013 (try again later) once a frame waits WS_SEND_TIMEOUT_SECONDS to be sent; an inbox
subscription whose pending updates outgrow their bound gets SUBSCRIBER_TOO_SLOW and its socket
is closed with 1013 too.

Only subscriptions run here; queries and mutations go over HTTP, where they run off the event
loop under the request limits. Every subscribe message passes ``SubscriptionGate`` first, in a
worker thread: it parses the document with the configured limits, selects the operation as
graphql-core's executor does, and refuses anything else with an ``error`` message that carries
a code, before anything runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    get_operation_ast,
    parse,
)
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

from gql.auth.tokens import ANON, LEEWAY_SECONDS, AuthenticationFailed, Caller
from gql.caching.lru import ByteLRU
from gql.graphql.authz import KNOWN_ROLES
from gql.graphql.caches import RuleClasses, document_bytes
from gql.graphql.errors import BAD_REQUEST, coded_errors
from gql.graphql.rules import validate_document
from gql.graphql.subscriptions import SubscriberTooSlow
from gql.ws.quotas import TOO_MANY, TOO_MANY_SOCKETS, Quotas, Ticket
from repo.ids import ProfileId

# graphql-ws 6's client gives up at once on 4401 (isFatalConnectionProblem's default) and
# retries 4403 and 1013 with a backoff; 4400 (a malformed message) and 4409 are fatal too.
UNAUTHORIZED, TOKEN_EXPIRED, TRY_AGAIN_LATER = 4401, 4403, 1013
BAD_REQUEST_CLOSE, SUBSCRIBER_EXISTS = 4400, 4409
TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"
# A subscribe's id is kept while it runs, up to WS_MAX_SUBSCRIPTIONS of them per socket
# (graphql-ws's client makes UUIDs, 36 characters).
MAX_OPERATION_ID_CHARS = 128
_PAYLOAD_MESSAGES = ("connection_init", "ping", "pong")
_ID_MESSAGES = ("subscribe", "complete")


def envelope_problem(message: object) -> str | None:
    """Why a client's message is malformed, in a few words (the socket closes with 4400 and
    them as its reason: fixed text, never the client's, so it always fits a close frame's
    123 bytes), or None when its envelope is sound.

    graphql-ws's own rules for what a client sends (its ``validateMessage``): an object with
    a known ``type``; ``connection_init``, ``ping`` and ``pong`` with an object or null as
    ``payload``; ``subscribe`` and ``complete`` with a non-empty string ``id``, here at most
    MAX_OPERATION_ID_CHARS long. A subscribe's payload is SubscriptionGate's to judge.
    """
    if not isinstance(message, dict):
        return "a message must be a JSON object"
    kind = message.get("type")
    if not isinstance(kind, str):
        return "a message needs a string type"
    if kind in _PAYLOAD_MESSAGES:
        if not isinstance(message.get("payload"), dict | None):
            return f"a {kind} payload must be an object or null"
        return None
    if kind not in _ID_MESSAGES:
        return "unknown message type"
    operation_id = message.get("id")
    if not isinstance(operation_id, str) or not operation_id:
        return f"a {kind} message needs a non-empty string id"
    if len(operation_id) > MAX_OPERATION_ID_CHARS:
        return f"an id is at most {MAX_OPERATION_ID_CHARS} characters"
    return None


def bearer_token(payload: dict[str, Any]) -> str | None:
    """The Authorization value of a connection_init payload (its own or under "headers")."""
    for source in (payload, payload.get("headers")):
        if isinstance(source, dict):
            for key in ("Authorization", "authorization"):
                if isinstance(value := source.get(key), str):
                    return value
    return None


class HelplineTransportWSHandler(BaseGraphQLTransportWSHandler[dict[str, Any], None]):
    expiry: asyncio.TimerHandle | None = None  # a timer, not a task: one per open socket
    closer_on_expiry: asyncio.Task[None] | None = None
    too_slow: bool = False
    closing: bool = False
    closer: asyncio.Task[None] | None = None  # the close of a socket whose client fell behind
    counted_present: bool = False

    async def handle(self) -> None:
        try:
            await super().handle()
        finally:
            if self.expiry is not None:
                self.expiry.cancel()
            caller = self.context.get("caller")
            if self.counted_present and isinstance(caller, Caller) and caller.user_id:
                await self.view.presence.leave(ProfileId(caller.user_id))  # type: ignore[attr-defined]

    async def handle_message(self, message: Message) -> None:
        """Strawberry's handling, for a message whose envelope is sound; any other closes the
        socket with 4400 (Strawberry would index into it and fail with a traceback)."""
        if problem := envelope_problem(message):
            await self.websocket.close(code=BAD_REQUEST_CLOSE, reason=problem)
            return
        await super().handle_message(message)

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
                await self.websocket.close(code=UNAUTHORIZED, reason="role may not use this API")
                return
            ticket: Ticket = self.context["request"].scope["helpline.ticket"]
            quotas: Quotas = self.view.quotas  # type: ignore[attr-defined]
            identity = None if caller.is_service else caller.user_id  # service_role: not counted
            if not quotas.identify(ticket, identity, self.operations):
                await self.websocket.close(code=TOO_MANY, reason=TOO_MANY_SOCKETS)
                return
            self.context["caller"] = caller
            assert caller.expires_at is not None  # a verified token always has one
            self.expiry = asyncio.get_running_loop().call_later(
                max(0.0, caller.expires_at + LEEWAY_SECONDS - time.time()), self._expired
            )
            self.counted_present = await self.view.presence.join(  # type: ignore[attr-defined]
                None if caller.user_id is None else ProfileId(caller.user_id),
                lambda: caller.is_admin,
            )
        await super().handle_connection_init(message)

    def _expired(self) -> None:
        self.closer_on_expiry = asyncio.create_task(self._close(TOKEN_EXPIRED, "token expired"))

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
        """End every subscription on this socket at once (nothing more is queued or read for
        it), then close it with 1013. The close frame waits behind what is buffered: it goes
        once the client reads again, or the connection is dropped by the keepalive ping."""
        if self.closing:
            return
        self.closing = True
        tasks = [op.task for op in self.operations.values() if op.task is not None]
        asyncio.get_running_loop().call_soon(lambda: [task.cancel() for task in tasks])
        self.closer = asyncio.create_task(self._close(TRY_AGAIN_LATER, "subscriber too slow"))

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):  # it may be closing already
            await self.websocket.close(code=code, reason=reason)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if not self.connection_acknowledged:
            await super().handle_subscribe(message)  # closes the socket with 4401
            return
        if message["id"] in self.operations:  # Strawberry's reason quotes the id: it may not fit
            await self.websocket.close(code=SUBSCRIBER_EXISTS, reason="subscriber already exists")
            return
        limit = self.max_subscriptions_per_connection
        if limit is not None and len(self.operations) >= limit:
            await self._refuse(
                message["id"],
                [_coded(f"at most {limit} subscriptions per socket", TOO_MANY_SUBSCRIPTIONS)],
            )
            return
        gate: SubscriptionGate = self.view.subscription_gate  # type: ignore[attr-defined]
        refused = gate.refusal(message.get("payload"), known_only=True)
        if refused is None:  # parse or validate, off the event loop
            refused = await run_in_threadpool(gate.refusal, message.get("payload"))
        if refused:
            await self._refuse(message["id"], refused)
            return
        # Counted and registered with no await between: sockets of one caller subscribing
        # at once cannot all slip under the bound.
        quotas: Quotas = self.view.quotas  # type: ignore[attr-defined]
        if not quotas.may_subscribe(self.context["request"].scope["helpline.ticket"]):
            per_caller = quotas.subscriptions_per_caller
            await self._refuse(
                message["id"],
                [_coded(f"at most {per_caller} subscriptions per caller", TOO_MANY_SUBSCRIPTIONS)],
            )
            return
        caller = self.context.get("caller")
        if isinstance(caller, Caller):  # an admin may have been demoted since the last one
            self.context["caller"] = caller.rechecked()
        await super().handle_subscribe(message)

    async def _refuse(self, operation_id: str, errors: list[GraphQLError]) -> None:
        payload = [error.formatted for error in coded_errors(errors, request_id=None)]
        await self.send_message({"id": operation_id, "type": "error", "payload": payload})


def _coded(message: str, code: str = BAD_REQUEST) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code})


class SubscriptionGate:
    """Whether a subscribe message may run, decided before anything runs.

    The document is parsed with the server's ``max_tokens`` and validated with its rules (the
    executor's own), and the operation is selected exactly as graphql-core's executor selects
    it: by ``operationName``, and a document with several operations and no name is refused.
    Anything but a subscription is refused: the socket runs nothing on the event loop.

    Documents parsed and validated before are remembered in the executor's own caches
    (PARSE_CACHE_BYTES, VALIDATION_CACHE_BYTES), so a storm of widgets subscribing with the
    same document after a deploy parses and validates it once; ``refusal(known_only=True)``
    answers those on the event loop, and leaves the rest (None) for a worker thread.
    """

    def __init__(
        self,
        schema: GraphQLSchema,
        *,
        rules: Sequence[type[ASTValidationRule]],
        max_tokens: int,
        parsed: ByteLRU[str, DocumentNode],
        validated: ByteLRU[tuple[str, RuleClasses], bool],
    ) -> None:
        self.schema = schema
        self.rules = tuple(rules)
        self.max_tokens = max_tokens
        self.parsed = parsed
        self.validated = validated

    def refusal(self, payload: object, *, known_only: bool = False) -> list[GraphQLError] | None:
        """The errors that refuse this subscribe payload; empty when it may run. With
        ``known_only``, None when deciding would parse or validate (a worker thread's job)."""
        if problem := _payload_problem(payload):
            return [_coded(problem)]
        assert isinstance(payload, dict)
        query, name = payload["query"], payload.get("operationName")
        document = self.parsed.get(query)
        if document is None:
            if known_only:
                return None
            try:
                document = parse(query, max_tokens=self.max_tokens)
            except GraphQLError as error:
                return [error]
            self.parsed.put(query, document, document_bytes(query, document))
        if problem := _operation_problem(document, name):
            return [_coded(problem)]
        if self.validated.get((query, self.rules)):
            return []
        if known_only:
            return None
        errors = validate_document(self.schema, document, self.rules)
        if not errors:
            self.validated.put((query, self.rules), True, 0)
        return errors


def _payload_problem(payload: object) -> str | None:
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return "a subscribe payload needs a 'query' string"
    name = payload.get("operationName")
    if name is not None and not isinstance(name, str):
        return "'operationName' must be a string or null"
    for key in ("variables", "extensions"):
        if not isinstance(payload.get(key), dict | None):
            return f"'{key}' must be an object or null"
    return None


def _operation_problem(document: DocumentNode, name: str | None) -> str | None:
    """The operation selected as graphql-core's executor selects it, which must be a
    subscription; the executor's words when there is none."""
    operation = get_operation_ast(document, name)
    if operation is None:
        if name is not None:
            return f"Unknown operation named '{name}'."
        if any(isinstance(d, OperationDefinitionNode) for d in document.definitions):
            return "Must provide operation name if query contains multiple operations."
        return "Must provide an operation."
    if operation.operation != OperationType.SUBSCRIPTION:
        return "only subscriptions run over WebSocket; send queries and mutations over HTTP"
    return None
