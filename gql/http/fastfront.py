"""The fast path's HTTP side: hot documents answered in front of Starlette's stack.

A hot request (a small JSON POST to /graphql) costs one indexed read in the database, but on
its way through Starlette it also paid for the routing, the error and exception middleware,
the body-size middleware and Starlette's Request and Response objects: together about a third
of the server's CPU per request (BENCHMARKS.md). So this middleware, the first of the app's,
reads the small body itself, runs the document's plan (gql/fastpath/plans.py) in a worker
thread and answers with two ASGI messages. Whatever it cannot answer goes on to the app
unchanged, with the body it read replayed, so the generic path sees the request exactly as the
client sent it.
"""

from __future__ import annotations

import functools
import json
import time
from typing import Any

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gql.auth.tokens import ANON, AuthenticationFailed, Authenticator
from gql.fastpath.plans import Fallback, FastPaths, RootFailed
from gql.graphql.errors import SERVICE_UNAVAILABLE
from gql.graphql.schema import SEND_ALLOWANCE
from gql.http.responses import (
    GRAPHQL_RESPONSE_JSON,
    Finisher,
    rate_headers,
    request_id_from,
    status_of,
    wants_graphql_response,
)
from gql.http.view import in_worker_thread, timed_out
from gql.observability.logs import request_id_var
from gql.observability.metrics import REFUSED_OPERATION
from gql.persisted.queries import PersistedQueries, PersistedQueryError, persisted_query_hash
from repo.allowance import Allowance

MAX_FAST_BODY_BYTES = 8192  # hot requests are small; larger ones are parsed once, by the executor
_WANTED = (b"content-type", b"content-length", b"authorization", b"accept", b"x-request-id")


class FastFront:
    """Answer the hot documents POSTed to ``path``; pass everything else to ``app``.

    ``cors``: the options of the app's CORS middleware (None: no CORS_ORIGINS). A fast answer
    then gets its headers from a CORSMiddleware built with the same options, by the method that
    middleware adds them with, so a browser's cross-origin request is answered here with exactly
    the headers the app's stack would add (preflights, OPTIONS, go on to the app).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        fast_paths: FastPaths,
        authenticator: Authenticator,
        max_body_bytes: int,
        cors: dict[str, Any] | None,
        finish: Finisher,
        request_timeout_s: float,
        persisted: PersistedQueries,
        path: str = "/graphql",
    ) -> None:
        self.app = app
        self.fast_paths = fast_paths
        self.authenticator = authenticator
        self.max_body_bytes = min(max_body_bytes, MAX_FAST_BODY_BYTES)
        self.cors = CORSMiddleware(app, **cors) if cors is not None else None
        self.finish = finish
        self.request_timeout_s = request_timeout_s
        self.persisted = persisted
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        headers = _first_headers(scope["headers"])
        declared = headers.get(b"content-length", b"")
        if (
            not headers.get(b"content-type", b"").startswith(b"application/json")
            or not declared.isdigit()
            or int(declared) > self.max_body_bytes
        ):
            await self.app(scope, receive, send)
            return
        body, complete, disconnected = await _read_body(receive, self.max_body_bytes)
        if disconnected:
            return  # the client is gone: nobody to answer
        answer = await self._answer(scope, headers, body) if complete else None
        if answer is None:
            await self.app(scope, _replay(body, complete, receive), send)
            return
        status_line, payload = answer
        if self.cors is not None:  # the CORS middleware's own headers, as its stack adds them
            send = functools.partial(
                self.cors.send, send=send, request_headers=Headers(scope=scope)
            )
        await send(status_line)
        await send(payload)

    async def _answer(
        self, scope: Scope, headers: dict[bytes, bytes], body: bytes
    ) -> tuple[Message, Message] | None:
        """The response's two ASGI messages, or None when the generic path should answer."""
        try:
            data = json.loads(body)
        except (RecursionError, UnicodeDecodeError, ValueError):
            return None  # the generic path answers 400 with its reason
        if not isinstance(data, dict):
            return None
        query, operation_name = data.get("query"), data.get("operationName")
        digest = None
        if (extensions := data.get("extensions")) is not None:
            if not isinstance(extensions, dict) or extensions.keys() != {"persistedQuery"}:
                return None
            try:
                digest = persisted_query_hash(extensions)
                if digest is not None:
                    query = self.persisted.document(digest, query)
            except PersistedQueryError:
                return None  # the generic path answers it, with its code
        variables = data.get("variables")
        if not self.fast_paths.may_plan(query, operation_name) or not (
            variables is None or isinstance(variables, dict)
        ):
            return None
        started = time.perf_counter()
        request_id = request_id_from(_text(headers.get(b"x-request-id")))
        request_id_var.set(request_id)  # for lines the worker thread logs
        scope["helpline.request_id"] = request_id  # the same id if the generic path answers
        authorization = _text(headers.get(b"authorization"))
        response: dict[str, Any]
        allowance: Allowance | None = None
        try:
            operation, name, response, allowance = await in_worker_thread(
                functools.partial(
                    self._run_plan,
                    str(query),
                    operation_name,
                    authorization,
                    variables,
                    learn=digest if digest is not None and data.get("query") is not None else None,
                ),
                deadline_s=self.request_timeout_s,
            )
        except Fallback:
            return None
        except TimeoutError:
            message = timed_out(self.request_timeout_s)
            response = {
                "errors": [{"message": message, "extensions": {"code": SERVICE_UNAVAILABLE}}]
            }
            plan = self.fast_paths.compiled(str(query), operation_name)
            operation = plan.label if plan is not None else REFUSED_OPERATION
            name = plan.name if plan is not None else operation_name
        codes = [str(e["extensions"]["code"]) for e in response.get("errors", ())]
        status, extra = status_of(codes)
        extra |= rate_headers(allowance)
        self.fast_paths.answered += 1
        graphql_response = wants_graphql_response(_text(headers.get(b"accept")) or "")
        content = json.dumps(response, separators=(",", ":")).encode()
        seconds = time.perf_counter() - started
        self.finish(
            request_id=request_id,
            operation=operation,
            operation_name=name,
            seconds=seconds,
            status=status,
            codes=codes,
        )
        media_type = GRAPHQL_RESPONSE_JSON if graphql_response else "application/json"
        start: Message = {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(content)).encode()),
                (b"content-type", media_type.encode()),
                (b"x-request-id", request_id.encode()),
                *((name.lower().encode(), value.encode()) for name, value in extra.items()),
            ],
        }
        return start, {"type": "http.response.body", "body": content}

    def _run_plan(
        self,
        query: str,
        operation_name: str | None,
        authorization: str | None,
        variables: dict[str, Any] | None,
        *,
        learn: str | None,
    ) -> tuple[str, str | None, dict[str, Any], Allowance | None]:
        """(the operation's metric label, its name, the response, the allowance a send left its
        sender: SEND_ALLOWANCE, read in this thread). Runs in a worker thread, as the
        generic path does; documents compile only here, for an authenticated caller, never
        on the event loop. ``learn``: the persisted-query hash of a document sent with it, kept
        once the caller is known to be authenticated."""
        try:
            caller = self.authenticator.authenticate(authorization)
        except AuthenticationFailed:
            raise Fallback from None  # the generic path answers 401 with its reason
        if caller.role == ANON:
            raise Fallback
        plan = self.fast_paths.plan_for(query, operation_name)
        if plan is None:
            raise Fallback
        if learn is not None:  # a plan: the document parsed and validated
            self.persisted.remember(learn, query)
        try:
            response = {"data": plan.run(caller, variables)}
        except RootFailed as exc:
            response = exc.response
        return plan.label, plan.name, response, SEND_ALLOWANCE.get()


def _first_headers(raw: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """The first value of each header the fast path reads, as Starlette's ``Headers.get``."""
    found: dict[bytes, bytes] = {}
    for name, value in raw:
        if name in _WANTED and name not in found:
            found[name] = value
    return found


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")  # as Starlette decodes headers


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool, bool]:
    """(body read so far, whether it is complete, whether the client disconnected)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", False, True
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True, False
        if size > limit:  # more than declared: let the app's body-size limit judge it
            return b"".join(chunks), False, False


def _replay(body: bytes, complete: bool, receive: Receive) -> Receive:
    """A receive that first gives back what the fast path read, then the client's own."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": not complete}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
