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
from gql.graphql.schema import SEND_ALLOWANCE
from gql.http.pipeline import (
    DeadlineExceeded,
    Head,
    answer_headers,
    deadline_error,
    head_of,
    learn,
    persisted_document,
    within_deadline,
)
from gql.http.responses import Finisher
from gql.observability.metrics import REFUSED_OPERATION
from gql.persisted.queries import PersistedQueries, PersistedQueryError
from repo.allowance import Allowance

MAX_FAST_BODY_BYTES = 8192  # hot requests are small; larger ones are parsed once, by the executor
_WANTED = (b"content-type", b"content-length")  # the rest of the head: pipeline.head_of


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
        answer = await self._answer(scope, body) if complete else None
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

    async def _answer(self, scope: Scope, body: bytes) -> tuple[Message, Message] | None:
        """The response's two ASGI messages, or None when the generic path should answer."""
        try:
            data = json.loads(body)
        except (RecursionError, UnicodeDecodeError, ValueError):
            return None  # the generic path answers 400 with its reason
        if not isinstance(data, dict):
            return None
        extensions = data.get("extensions")
        if extensions is not None and (
            not isinstance(extensions, dict) or extensions.keys() != {"persistedQuery"}
        ):
            return None
        try:
            query, learn_as = persisted_document(self.persisted, extensions, data.get("query"))
        except PersistedQueryError:
            return None  # the generic path answers it, with its code
        operation_name, variables = data.get("operationName"), data.get("variables")
        if not self.fast_paths.may_plan(query, operation_name) or not (
            variables is None or isinstance(variables, dict)
        ):
            return None
        started = time.perf_counter()
        head = head_of(scope)  # the same id if the generic path answers
        allowance: Allowance | None = None
        try:
            operation, name, response, allowance = await within_deadline(
                functools.partial(
                    self._run_plan, str(query), operation_name, head, variables, learn_as
                ),
                deadline_s=self.request_timeout_s,
            )
        except Fallback:
            return None
        except DeadlineExceeded:
            message, code = deadline_error(self.request_timeout_s)
            response = {"errors": [{"message": message, "extensions": {"code": code}}]}
            plan = self.fast_paths.compiled(str(query), operation_name)
            operation = plan.label if plan is not None else REFUSED_OPERATION
            name = plan.name if plan is not None else operation_name
        codes = [str(e["extensions"]["code"]) for e in response.get("errors", ())]
        status, headers = answer_headers(head, codes, allowance)
        self.fast_paths.answered += 1
        content = json.dumps(response, separators=(",", ":")).encode()
        self.finish(
            request_id=head.request_id,
            operation=operation,
            operation_name=name,
            seconds=time.perf_counter() - started,
            status=status,
            codes=codes,
        )
        start: Message = {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(content)).encode()),
                *((name.lower().encode(), value.encode()) for name, value in headers.items()),
            ],
        }
        return start, {"type": "http.response.body", "body": content}

    def _run_plan(
        self,
        query: str,
        operation_name: str | None,
        head: Head,
        variables: dict[str, Any] | None,
        learn_as: str | None,
    ) -> tuple[str, str | None, dict[str, Any], Allowance | None]:
        """(the operation's metric label, its name, the response, the allowance a send left its
        sender: SEND_ALLOWANCE, read in this thread). Runs in a worker thread, as the
        generic path does; documents compile only here, for an authenticated caller, never
        on the event loop. ``learn_as``: the persisted-query hash of a document sent with it."""
        try:
            caller = self.authenticator.authenticate(head.authorization)
        except AuthenticationFailed:
            raise Fallback from None  # the generic path answers 401 with its reason
        if caller.role == ANON:
            raise Fallback
        plan = self.fast_paths.plan_for(query, operation_name)
        if plan is None:
            raise Fallback
        learn(self.persisted, learn_as, query, caller, valid=True)  # a plan: it validated
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
