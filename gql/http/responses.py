"""How every GraphQL HTTP response is finished, on the executor's path and the fast path alike:
its status and headers from its error codes, one access-log line and the metrics."""

from __future__ import annotations

import json
import logging
import re
from uuid import uuid4

from starlette.responses import Response

from gql.graphql.errors import (
    BAD_REQUEST,
    RATE_LIMITED,
    RETRY_AFTER_S,
    SERVICE_UNAVAILABLE,
    UNAUTHENTICATED,
)
from gql.observability.metrics import record_operation
from repo.allowance import Allowance

access_log = logging.getLogger("helpline.access")
MAX_NAME_CHARS = 64  # a client's operation name, as logged
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
    408: "REQUEST_TIMEOUT",
    413: "PAYLOAD_TOO_LARGE",
    414: "URI_TOO_LONG",
    415: "UNSUPPORTED_MEDIA_TYPE",
    431: "REQUEST_HEADER_FIELDS_TOO_LARGE",
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
    if RATE_LIMITED in codes:  # its Retry-After is the sender's own (rate_headers)
        return 429, {}
    return (400 if request_error_is_400 else 200), {}


def rate_headers(allowance: Allowance | None) -> dict[str, str]:
    """A send's headers: the sender's allowance (a minute's worth, what is left) and, when
    it was empty, when it holds a message again."""
    if allowance is None:
        return {}
    headers = {
        "X-RateLimit-Limit": str(allowance.limit),
        "X-RateLimit-Remaining": str(allowance.remaining),
    }
    if allowance.retry_after_s is not None:
        headers["Retry-After"] = str(allowance.retry_after_s)
    return headers


class Finisher:
    """Counts and logs each finished request once: the metrics, and one JSON access-log line
    (with ``successes=False``, ACCESS_LOG=errors, only for requests that failed: a line costs
    about 15 % of a hot request's CPU, which a deployment whose load balancer already logs
    every request need not pay)."""

    def __init__(self, *, successes: bool = True) -> None:
        self.successes = successes

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
        """``operation``: the metric label; ``operation_name``: whatever the client named
        (it stays in the log, never in a metric)."""
        record_operation(operation, seconds, codes)
        if status == 200 and not codes and not self.successes:
            return
        name = operation_name[:MAX_NAME_CHARS] if isinstance(operation_name, str) else None
        access_log.info(
            "graphql request",
            extra={
                "request_id": request_id,
                "operation": operation,
                "operation_name": name,
                "duration_ms": round(seconds * 1000, 2),
                "status": status,
                "error_codes": codes,
            },
        )


def refusal(
    status_code: int,
    reason: str,
    headers: dict[str, str] | None = None,
    *,
    code: str | None = None,
) -> Response:
    """A request refused before execution, as a GraphQL error body with a code (by default
    the status's).

    The body is ASCII JSON: a reason may quote what the client sent (an unknown
    ``operationName``), and a lone surrogate there, which a JSON escape can carry but UTF-8
    cannot, goes back escaped as the client wrote it instead of failing the response.
    """
    code = code or HTTP_CODES.get(status_code, BAD_REQUEST)
    body = {"errors": [{"message": reason, "extensions": {"code": code}}]}
    content = json.dumps(body, separators=(",", ":"))
    return Response(content, status_code, headers, media_type="application/json")


def request_id_from(header: str | None) -> str:
    """The client's X-Request-ID when it is sane, else a new one."""
    return header if header and _CLIENT_REQUEST_ID.fullmatch(header) else uuid4().hex


def _accepted(accept: str) -> list[tuple[str, float]]:
    """An Accept header's media ranges and their weights (a malformed weight counts as 0)."""
    ranges = []
    for item in accept.split(","):
        media_type, *params = (part.strip().lower() for part in item.split(";"))
        weights = [p.removeprefix("q=") for p in params if p.startswith("q=")]
        try:
            weight = float(weights[0]) if weights else 1.0
        except ValueError:
            weight = 0.0
        if media_type:
            ranges.append((media_type, weight))
    return ranges


def _weight(ranges: list[tuple[str, float]], media_type: str) -> float:
    """The weight of ``media_type`` under the most specific range that matches it (RFC 9110)."""
    family = media_type.split("/", maxsplit=1)[0] + "/*"
    for candidate in (media_type, family, "*/*"):
        for name, weight in ranges:
            if name == candidate:
                return weight
    return 0.0


def prefers_html(accept: str) -> bool:
    """Whether a client ranks HTML above every JSON the API answers: a browser's address bar
    (text/html first, JSON only through */*), not an API client (JSON, or only */*)."""
    ranges = _accepted(accept)
    json_weight = max(_weight(ranges, t) for t in ("application/json", GRAPHQL_RESPONSE_JSON))
    return _weight(ranges, "text/html") > json_weight


def wants_graphql_response(accept: str) -> bool:
    """Whether an Accept header lists the GraphQL-over-HTTP media type (q above 0)."""
    return any(name == GRAPHQL_RESPONSE_JSON and w > 0 for name, w in _accepted(accept))
