"""The request side of every GraphQL request over HTTP, whichever executor answers it.

A GraphQL request reaches one of two executors: the compiled plan of a hot document, run by
the fast front in front of Starlette's stack (gql/http/fastfront.py), or Strawberry's, behind
it (gql/http/view.py). Both read the request through this module and finish the response
through gql/http/responses.py, so nothing about HTTP is decided twice:

- the head (``head_of``): the request id, the credentials, the media type the client accepts,
  read once per request and kept in its scope, so a request the fast front hands on keeps its id;
- the persisted query (``persisted_document``): the document a hash names, and the hash to
  learn it under (``learn``), once the document validated for an authenticated caller;
- the deadline (``within_deadline``): REQUEST_TIMEOUT_SECONDS for the work in a worker thread,
  then ``DeadlineExceeded``, answered alike by both (``deadline_error``);
- the answer's status and headers (``answer_headers``): from its error codes (responses.py's
  ``status_of``), the sender's allowance, the request id and the media type; and its one
  access-log line and metrics (responses.py's ``Finisher``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from starlette.types import Scope

from gql.auth.tokens import ANON, Caller
from gql.graphql.errors import SERVICE_UNAVAILABLE
from gql.http.responses import (
    GRAPHQL_RESPONSE_JSON,
    REQUEST_ID_HEADER,
    rate_headers,
    request_id_from,
    status_of,
    wants_graphql_response,
)
from gql.observability.logs import request_id_var
from gql.persisted.queries import PersistedQueries, persisted_query_hash
from repo.allowance import Allowance

log = logging.getLogger("helpline")
T = TypeVar("T")
_HEAD = "helpline.head"
_READ = (b"authorization", b"accept", b"x-request-id")


@dataclass(frozen=True, slots=True)
class Head:
    """What every answer needs from a request's headers."""

    request_id: str
    authorization: str | None
    graphql_response: bool  # the client accepts application/graphql-response+json

    @property
    def media_type(self) -> str:
        return GRAPHQL_RESPONSE_JSON if self.graphql_response else "application/json"


def head_of(scope: Scope) -> Head:
    """The request's head, read once (the first value of each header, as Starlette reads
    them) and kept in its scope; its id is also the log lines' request id from here on."""
    head: Head | None = scope.get(_HEAD)
    if head is not None:
        request_id_var.set(head.request_id)
        return head
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in _READ and name not in found:
            found[name] = value.decode("latin-1")
    head = Head(
        request_id=request_id_from(found.get(b"x-request-id")),
        authorization=found.get(b"authorization"),
        graphql_response=wants_graphql_response(found.get(b"accept", "")),
    )
    scope[_HEAD] = head
    request_id_var.set(head.request_id)
    return head


def persisted_document(
    persisted: PersistedQueries, extensions: Mapping[str, Any] | None, query: Any
) -> tuple[Any, str | None]:
    """(the document to run, the hash to learn it under once it validated: only when the client
    sent the document with its hash). Raises PersistedQueryError (a bad hash, an unknown one,
    a document that is not the hash's)."""
    digest = persisted_query_hash(extensions)
    if digest is None:
        return query, None
    return persisted.document(digest, query), (digest if query is not None else None)


def learn(
    persisted: PersistedQueries, digest: str | None, query: Any, caller: Caller, *, valid: bool
) -> None:
    """Keep a document under its hash: one that parsed and validated, from a caller who is
    known (an anonymous caller's documents fill nobody's cache)."""
    if digest is not None and valid and caller.role != ANON and isinstance(query, str):
        persisted.remember(digest, query)


class DeadlineExceeded(Exception):
    """The request's work did not finish within REQUEST_TIMEOUT_SECONDS."""


async def within_deadline(work: Callable[[], T], *, deadline_s: float) -> T:
    """Run ``work`` in a worker thread (the repository is synchronous), waiting at most
    ``deadline_s`` for it: then DeadlineExceeded. The thread is abandoned, not stopped: when the
    database went silent (no reply, no error) it finishes once the connection breaks or the
    database answers, and its pooled connection comes back then."""
    try:
        with anyio.fail_after(deadline_s):
            return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
    except TimeoutError:
        log.warning("request abandoned after REQUEST_TIMEOUT_SECONDS (%s s)", deadline_s)
        raise DeadlineExceeded from None


def deadline_error(deadline_s: float) -> tuple[str, str]:
    """(message, code) of a request abandoned at its deadline (HTTP 503 with Retry-After)."""
    return f"the request did not finish within {deadline_s:g} s; retry shortly", SERVICE_UNAVAILABLE


def answer_headers(
    head: Head, codes: list[str], allowance: Allowance | None, *, request_error: bool = False
) -> tuple[int, dict[str, str]]:
    """The status and headers of a GraphQL response with these error codes: the status's own
    (401's WWW-Authenticate, 503's Retry-After), the sender's allowance, the request id and the
    media type the client accepts. ``request_error``: it never executed (a parse or validation
    error), which is a 400 for a client that asked for application/graphql-response+json."""
    status, headers = status_of(codes, request_error_is_400=request_error and head.graphql_response)
    return status, {
        **headers,
        **rate_headers(allowance),
        REQUEST_ID_HEADER: head.request_id,
        "content-type": head.media_type,
    }
