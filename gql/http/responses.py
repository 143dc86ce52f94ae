"""How every GraphQL HTTP response is finished, on the executor's path and the fast path alike:
its status and headers from its error codes, one access-log line and the metrics."""

from __future__ import annotations

import re
from uuid import uuid4

from starlette.responses import JSONResponse, Response

from gql.graphql.errors import BAD_REQUEST, RETRY_AFTER_S, SERVICE_UNAVAILABLE, UNAUTHENTICATED
from gql.graphql.logs import RequestLog
from gql.graphql.metrics import record_operation

REQUEST_ID_HEADER = "X-Request-ID"
GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
WWW_AUTHENTICATE = 'Bearer realm="helpline"'
RETRY_AFTER = {"Retry-After": str(RETRY_AFTER_S)}
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
HTTP_CODES = {
    400: BAD_REQUEST,
    401: UNAUTHENTICATED,
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    503: SERVICE_UNAVAILABLE,
}


def status_of(
    codes: list[str], *, request_error_is_400: bool = False
) -> tuple[int, dict[str, str]]:
    """The HTTP status and extra headers of a GraphQL response with these error codes.

    ``request_error_is_400``: the response is a request error (it never executed) that the
    client asked for as application/graphql-response+json, which the spec answers with 400.
    """
    if UNAUTHENTICATED in codes:
        return 401, {"WWW-Authenticate": WWW_AUTHENTICATE}
    if SERVICE_UNAVAILABLE in codes:  # retry the request (what is safe to: README)
        return 503, dict(RETRY_AFTER)
    return (400 if request_error_is_400 else 200), {}


class Finisher:
    """Counts and logs each finished request once: the metrics and the access-log line."""

    def __init__(self, request_log: RequestLog) -> None:
        self.request_log = request_log

    def __call__(
        self,
        *,
        request_id: str,
        operation: str,
        operation_name: object,
        seconds: float,
        status: int,
        codes: list[str],
    ) -> None:
        """``operation``: the metric label; ``operation_name``: whatever the client named."""
        record_operation(operation, seconds, codes)
        self.request_log(
            request_id=request_id,
            operation=operation,
            operation_name=operation_name,
            seconds=seconds,
            status=status,
            codes=codes,
        )


def refusal(status_code: int, reason: str, headers: dict[str, str] | None = None) -> Response:
    """A request refused before execution, as a GraphQL error body with a code."""
    code = HTTP_CODES.get(status_code, BAD_REQUEST)
    body = {"errors": [{"message": reason, "extensions": {"code": code}}]}
    return JSONResponse(body, status_code=status_code, headers=headers)


def request_id_from(header: str | None) -> str:
    """The client's X-Request-ID when it is sane, else a new one."""
    return header if header and _CLIENT_REQUEST_ID.fullmatch(header) else uuid4().hex


def wants_graphql_response(accept: str) -> bool:
    """Whether an Accept header lists the GraphQL-over-HTTP media type (q above 0)."""
    for item in accept.split(","):
        media_type, *params = (part.strip().lower() for part in item.split(";"))
        if media_type == GRAPHQL_RESPONSE_JSON:
            weights = [p.removeprefix("q=") for p in params if p.startswith("q=")]
            try:
                return not weights or float(weights[0]) > 0
            except ValueError:
                return False
    return False
