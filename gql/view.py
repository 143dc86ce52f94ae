"""The GraphQL HTTP view: operations run in a worker thread, refusals answer as GraphQL errors."""

from __future__ import annotations

import re
from typing import Any
from uuid import uuid4

from cross_web import HTTPException
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.http import GraphQLRequestData
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from gql.errors import add_codes

REQUEST_ID_HEADER = "X-Request-ID"
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

_HTTP_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


class MethodNotAllowed(HTTPException):
    def __init__(self, reason: str, allow: str) -> None:
        super().__init__(405, reason)
        self.allow = allow


class HelplineGraphQL(GraphQL[dict[str, Any], None]):
    """Strawberry's ASGI view, with the whole operation run by ``execute_sync`` in a thread.

    The repository is synchronous; running it on the event loop would let one slow query
    stall every other request.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        try:
            response = await self.run(Request(scope, receive))
        except HTTPException as exc:
            response = _refusal(exc)
        await response(scope, receive, send)

    async def get_context(self, request: Any, response: Any) -> dict[str, Any]:
        header = request.headers.get(REQUEST_ID_HEADER) if isinstance(request, Request) else None
        request_id = header if header and _CLIENT_REQUEST_ID.fullmatch(header) else uuid4().hex
        if isinstance(response, Response):
            response.headers[REQUEST_ID_HEADER] = request_id
        return {"request": request, "response": response, "request_id": request_id}

    async def execute_single(
        self,
        request: Request,
        request_adapter: Any,
        sub_response: Response,
        context: dict[str, Any],
        root_value: Any,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        method = request_adapter.method
        allowed = OperationType.from_http(method)
        try:
            result = await run_in_threadpool(
                self.schema.execute_sync,
                request_data.query,
                variable_values=request_data.variables,
                context_value=context,
                root_value=root_value,
                operation_name=request_data.operation_name,
                allowed_operation_types=allowed,
                operation_extensions=request_data.extensions,
            )
        except InvalidOperationTypeError as exc:
            raise MethodNotAllowed(exc.as_http_error_reason(method) + "; use POST", "POST") from exc
        except CannotGetOperationTypeError as exc:
            raise HTTPException(400, exc.as_http_error_reason()) from exc
        except MissingQueryError as exc:
            raise HTTPException(400, "No GraphQL query found in the request") from exc
        return add_codes(result, context["request_id"])


def _refusal(exc: HTTPException) -> Response:
    """A request refused before execution, as a GraphQL error body with a code."""
    code = _HTTP_CODES.get(exc.status_code, "BAD_REQUEST")
    body = {"errors": [{"message": exc.reason, "extensions": {"code": code}}]}
    headers = {"Allow": exc.allow} if isinstance(exc, MethodNotAllowed) else None
    return JSONResponse(body, status_code=exc.status_code, headers=headers)
