"""The GraphQL HTTP view: authentication, operations in a worker thread, GraphQL-over-HTTP."""

from __future__ import annotations

import functools
import json
import time
from typing import Any, Literal

from cross_web import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from gql.auth.tokens import AuthenticationFailed, Authenticator, Caller
from gql.graphql.errors import BAD_REQUEST, add_codes
from gql.graphql.schema import SEND_ALLOWANCE
from gql.http.pipeline import (
    DeadlineExceeded,
    answer_headers,
    deadline_error,
    head_of,
    learn,
    persisted_document,
    within_deadline,
)
from gql.http.playground import localize
from gql.http.responses import (
    HTTP_CODES,
    REQUEST_ID_HEADER,
    RETRY_AFTER,
    WWW_AUTHENTICATE,
    Finisher,
    prefers_html,
    refusal,
)
from gql.observability.metrics import (
    INVALID_OPERATION,
    REFUSED_OPERATION,
    WEBSOCKET_CONNECTIONS,
)
from gql.persisted.queries import PersistedQueries, PersistedQueryError
from gql.realtime.hub import Hub
from gql.realtime.presence import Presence
from gql.ws.quotas import TOO_MANY, TOO_MANY_PENDING, Quotas
from gql.ws.websocket import HelplineTransportWSHandler, SubscriptionGate
from repo.allowance import SendLimits

_LEARN_AS = "learn_as"  # the context's: the hash a document sent with it is learned under
# Subscriptions are served over WebSocket only (gql/ws): over HTTP they are a request error.
HTTP_OPERATION_TYPES = {
    "GET": {OperationType.QUERY},
    "POST": {OperationType.QUERY, OperationType.MUTATION},
}
SUBSCRIPTIONS_OVER_WEBSOCKET = (
    "subscriptions are served over WebSocket: open /graphql with the graphql-transport-ws "
    "protocol (graphql-ws)"
)


class Refusal(HTTPException):
    """A request refused before execution, with extra response headers (and a code of its
    own where the status's usual code would not say it: PERSISTED_QUERY_NOT_FOUND)."""

    def __init__(
        self, status_code: int, reason: str, headers: dict[str, str], code: str | None = None
    ) -> None:
        super().__init__(status_code, reason)
        self.headers = headers
        self.code = code or HTTP_CODES.get(status_code, BAD_REQUEST)


def refusal_code(exc: HTTPException, status: int) -> str:
    """The code a refused request's error carries: the refusal's own, else its status's."""
    return exc.code if isinstance(exc, Refusal) else HTTP_CODES.get(status, BAD_REQUEST)


class HelplineGraphQL(GraphQL[dict[str, Any], None]):
    """Strawberry's ASGI view, with the whole operation run by ``execute_sync`` in a thread.

    The repository is synchronous; running it on the event loop would let one slow query
    stall every other request.
    """

    graphql_transport_ws_handler_class = HelplineTransportWSHandler

    def __init__(
        self,
        schema: Any,
        authenticator: Authenticator,
        *,
        hub: Hub,
        presence: Presence,
        max_sockets: int,
        send_timeout_s: float,
        finish: Finisher,
        request_timeout_s: float,
        subscription_gate: SubscriptionGate,
        welcome_message: str,
        send_limits: SendLimits,
        quotas: Quotas,
        persisted: PersistedQueries,
        **kwargs: Any,
    ) -> None:
        super().__init__(schema, subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,), **kwargs)
        self.authenticator = authenticator
        self.hub = hub
        self.presence = presence
        self.max_sockets = max_sockets
        self.send_timeout_s = send_timeout_s
        self.finish = finish
        self.request_timeout_s = request_timeout_s
        self.subscription_gate = subscription_gate
        self.welcome_message = welcome_message  # what resolvers open new conversations with
        self.send_limits = send_limits
        self.quotas = quotas
        self.persisted = persisted
        self.sockets = 0
        self._page: str | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope, receive)
        started = time.perf_counter()
        try:
            response = await self.run(request)
        except ClientDisconnect:
            return  # gone while its body was arriving (or cut at its deadline): nobody to answer
        except HTTPException as exc:
            status = 415 if exc.reason == "Unsupported content type" else exc.status_code
            code = refusal_code(exc, status)
            response = refusal(status, exc.reason, getattr(exc, "headers", None), code=code)
            head = head_of(scope)
            response.headers[REQUEST_ID_HEADER] = head.request_id
            response.headers["content-type"] = head.media_type
            if not scope.get("helpline.logged"):  # refused before execute_single finished it
                self.finish(
                    request_id=head.request_id,
                    operation=REFUSED_OPERATION,
                    operation_name=None,
                    seconds=time.perf_counter() - started,
                    status=status,
                    codes=[code],
                )
        await response(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one socket, refusing it when this process already holds max_sockets."""
        if self.sockets >= self.max_sockets:
            await _refuse_socket(scope, receive, send, 1013, "Try again later")
            return
        client = scope.get("client")
        ticket = self.quotas.open(client[0] if client else "")
        if ticket is None:
            await _refuse_socket(scope, receive, send, TOO_MANY, TOO_MANY_PENDING)
            return
        scope["helpline.ticket"] = ticket
        self.sockets += 1
        WEBSOCKET_CONNECTIONS.inc()
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.sockets -= 1
            self.quotas.close(ticket)
            WEBSOCKET_CONNECTIONS.dec()

    def should_render_graphql_ide(self, request: Any) -> bool:
        """The playground for a browser: Strawberry's rule (a GET with no query or persisted
        query that takes HTML or anything), and a link with ``?query=`` opened by a browser,
        which GraphiQL then shows filled in. API clients get the query executed."""
        if request.method != "GET":
            return False
        query, extensions = (request.query_params.get(p) for p in ("query", "extensions"))
        if query is None and extensions is None:
            return super().should_render_graphql_ide(request)
        if query is None:  # a persisted query's hash: an API client's request
            return False
        return self.graphql_ide is not None and prefers_html(request.headers.get("accept", ""))

    async def render_graphql_ide(self, request: Request) -> Response:
        if self._page is None:
            self._page = localize(self.graphql_ide_html)
        return HTMLResponse(self._page)

    def decode_json(self, data: str | bytes) -> object:
        """Strawberry's decoder, with every text it cannot decode a JSONDecodeError, which
        both transports answer as malformed JSON (HTTP 400, the socket's close code 4400):
        nesting deeper than the decoder recurses (RecursionError), an integer too long to
        convert, bytes that are not UTF-8 (ValueErrors of other kinds)."""
        try:
            return super().decode_json(data)
        except json.JSONDecodeError:
            raise
        except (RecursionError, ValueError) as exc:
            raise json.JSONDecodeError(type(exc).__name__, "", 0) from None

    def parse_json(self, data: str | bytes) -> Any:
        """Strawberry's parser (every malformed body a 400, decode_json), and a JSON body (or
        a GET's ``variables`` and ``extensions``) must be an object (an array: a batch)."""
        value = super().parse_json(data)
        if not isinstance(value, dict | list):  # a request, its variables or extensions
            raise HTTPException(400, "Expected a JSON object, not a bare JSON value")
        return value

    async def parse_http_body(self, request: Any) -> Any:
        """Strawberry's envelope checks, and ``operationName`` a string or null too."""
        data = await super().parse_http_body(request)
        if isinstance(data, list):
            return data
        if not isinstance(data.operation_name, str | None):
            reason = (
                "The GraphQL operation's `operationName` must be a string or null, if provided."
            )
            raise HTTPException(400, reason)
        return data

    async def get_context(self, request: Any, response: Any) -> dict[str, Any]:
        request_id = head_of(request.scope).request_id
        if isinstance(response, Response):
            response.headers[REQUEST_ID_HEADER] = request_id
        return {
            "request": request,
            "response": response,
            "request_id": request_id,
            "hub": self.hub,
            "welcome_message": self.welcome_message,
            "send_limits": self.send_limits,
        }

    async def execute_single(
        self,
        request: Request,
        request_adapter: Any,
        sub_response: Response,
        context: dict[str, Any],
        root_value: Any,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        head = head_of(request.scope)
        started = time.perf_counter()
        codes: list[str] = []
        status = 200
        try:
            try:
                request_data.query, learn_as = persisted_document(
                    self.persisted, request_data.extensions, request_data.query
                )
            except PersistedQueryError as exc:
                raise Refusal(exc.status, str(exc), exc.headers, exc.code) from None
            context[_LEARN_AS] = learn_as
            result = await self._execute(request, context, root_value, request_data)
            add_codes(result, head.request_id)
            codes = [str((e.extensions or {}).get("code")) for e in result.errors or []]
            status, headers = answer_headers(
                head, codes, context.get("allowance"), request_error=is_request_error(result)
            )
            sub_response.status_code = status
            sub_response.headers.update(headers)
            return result
        except HTTPException as exc:
            status, codes = exc.status_code, [refusal_code(exc, exc.status_code)]
            raise
        finally:
            seconds = time.perf_counter() - started
            status = sub_response.status_code or status
            request.scope["helpline.logged"] = True
            self.finish(
                request_id=context["request_id"],
                operation=context.get("operation_label", REFUSED_OPERATION),
                operation_name=context.get("operation_name", request_data.operation_name),
                seconds=seconds,
                status=status,
                codes=codes,
            )

    async def _execute(
        self,
        request: Request,
        context: dict[str, Any],
        root_value: Any,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """Run the operation in a worker thread, turning pre-execution refusals into HTTP ones."""
        method = request.method
        try:
            return await within_deadline(
                functools.partial(
                    self._authenticate_and_execute, request, context, root_value, request_data
                ),
                deadline_s=self.request_timeout_s,
            )
        except DeadlineExceeded as exc:
            message, code = deadline_error(self.request_timeout_s)
            raise Refusal(503, message, RETRY_AFTER, code) from exc
        except InvalidOperationTypeError as exc:
            if exc.operation_type == OperationType.SUBSCRIPTION:
                raise HTTPException(400, SUBSCRIPTIONS_OVER_WEBSOCKET) from exc
            reason = exc.as_http_error_reason(method) + "; use POST"
            raise Refusal(405, reason, {"Allow": "POST"}) from exc
        except CannotGetOperationTypeError as exc:
            raise HTTPException(400, exc.as_http_error_reason()) from exc
        except MissingQueryError as exc:
            raise HTTPException(400, "No GraphQL query found in the request") from exc
        except AuthenticationFailed as exc:
            raise Refusal(401, str(exc), {"WWW-Authenticate": WWW_AUTHENTICATE}) from exc

    def _authenticate_and_execute(
        self,
        request: Request,
        context: dict[str, Any],
        root_value: Any,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """Runs in a worker thread: verifying a token may fetch a JWKS document."""
        caller: Caller = self.authenticator.authenticate(head_of(request.scope).authorization)
        context["caller"] = caller
        context["operation_label"] = INVALID_OPERATION  # until it validates (OperationLabel)
        result = self.schema.execute_sync(
            request_data.query,
            variable_values=request_data.variables,
            context_value=context,
            root_value=root_value,
            operation_name=request_data.operation_name,
            allowed_operation_types=HTTP_OPERATION_TYPES[request_method(request)],
            operation_extensions=request_data.extensions,
        )
        context["allowance"] = SEND_ALLOWANCE.get()  # set in this thread by a send
        learn_as = context[_LEARN_AS]
        validated = context["operation_label"] != INVALID_OPERATION  # its variables aside
        learn(self.persisted, learn_as, request_data.query, caller, valid=validated)
        return result

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        response = await super().process_result(request, result)
        if is_request_error(result):
            response.pop("data", None)  # the spec: no data entry when execution never started
        return response

    def create_response(
        self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse], sub_response: Response
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        if media_type := sub_response.headers.get("content-type"):
            response.headers["content-type"] = media_type  # the one the request accepts, once
        return response


async def _refuse_socket(
    scope: Scope, receive: Receive, send: Send, code: int, reason: str
) -> None:
    """Accept a socket (so that its client can read the close code) and close it at once."""
    socket = WebSocket(scope, receive, send)
    offered = [p.strip() for p in socket.headers.get("sec-websocket-protocol", "").split(",")]
    protocol = GRAPHQL_TRANSPORT_WS_PROTOCOL if GRAPHQL_TRANSPORT_WS_PROTOCOL in offered else None
    await socket.accept(subprotocol=protocol)
    await socket.close(code=code, reason=reason)


def request_method(request: Request) -> Literal["GET", "POST"]:
    """The view's route only admits GET and POST."""
    return "GET" if request.method == "GET" else "POST"


def is_request_error(result: ExecutionResult) -> bool:
    """Parse, validation or variable errors: execution never started."""
    errors = result.errors or []
    return result.data is None and bool(errors) and all(e.path is None for e in errors)
