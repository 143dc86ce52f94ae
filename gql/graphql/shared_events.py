"""One execution per subscription event for every subscriber who would get the same answer.

Five widgets on one conversation, twenty consoles on one inbox: each event used to be executed
once per subscriber, the same selection over the same value, and that execution was most of
what delivery cost (BENCHMARKS.md, issue #24). Here the executor's own per-event execution runs
once and its result is handed to every subscriber whose answer cannot differ, which is when they
have:

- the same event value: the hub hands every follower of a conversation the same message view,
  and ``shared_payload`` turns each view into the one Strawberry object all of them execute
  over (inbox items, built per reader, are shared when equal: same conversation state, same
  unread count);
- the same operation: the parse cache gives every socket that sends the same document text the
  same parsed document, so the operation node is one object;
- the same variable values;
- the same audience: what a field may show depends on the caller in one place only,
  ``Profile.assignedConversationCount`` (staff or not), so callers are grouped by that, as far
  as it is known without asking the database (a caller whose admin status is not known yet
  shares nothing); a field that reads more of the caller must be added to ``audience_of``;
- the same moment: an answer is shared for SHARE_WINDOW_S after it was computed (a page of
  messages or a count in it would go stale), and one with errors is not shared at all.

Each subscriber still gets its own result object (its errors list is its own, for the error
codes added on the way out) and its own frame. tests/integration/test_shared_events.py checks,
on documents Hypothesis generates and callers of every role, that a shared answer is the one
each subscriber's own execution gives.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from graphql import ExecutionResult
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from gql.auth.tokens import Caller

SHARED_RESULTS = 256  # events' answers kept for the subscribers still to be sent them
SHARED_PAYLOADS = 2048  # views' Strawberry objects kept for the followers still to get them
SHARE_WINDOW_S = 1.0  # how long an answer (or an inbox item's object) is shared
T = TypeVar("T")


class _Recent(OrderedDict[Hashable, Any]):
    """The most recent ``size`` entries (an event is served within moments of its arrival)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def keep(self, key: Hashable, value: Any) -> None:
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)


_payloads = _Recent(SHARED_PAYLOADS)
_results = _Recent(SHARED_RESULTS)


def shared_payload(view: Any, build: Callable[[Any], T], *, by_value: bool = False) -> T:
    """The one object built from ``view`` for every subscriber it is delivered to.

    By identity (the hub's one view per event) or, with ``by_value``, by equality (views built
    per reader that came out the same)."""
    key = (build, view if by_value else id(view))
    found = _payloads.get(key)
    now = time.monotonic()
    if found is not None and (by_value or found[0] is view) and now - found[2] < SHARE_WINDOW_S:
        return found[1]  # type: ignore[no-any-return]
    payload = build(view)
    _payloads.keep(key, (view, payload, now))  # the view is kept so that its id is not reused
    return payload


def audience_of(context: Any) -> Hashable | None:
    """What of the caller an answer depends on; None: share nothing with this subscriber."""
    caller = context.get("caller") if isinstance(context, dict) else None
    if not isinstance(caller, Caller):
        return None
    if caller.is_service:
        return True
    return caller.known_admin  # never a database read here, on the event loop


def _frozen(value: Any) -> Hashable:
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    hash(value)  # TypeError for what cannot be a key: not shared
    return value  # type: ignore[no-any-return]


class SharedEventExecutor(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor, executing each event once per group of subscribers
    whose answers cannot differ (see the module); queries and mutations run as they did."""

    shared_key: Hashable | None = None

    def build_per_event_executor(self, payload: Any) -> SharedEventExecutor:
        executor = super().build_per_event_executor(payload)
        assert isinstance(executor, SharedEventExecutor)
        audience = audience_of(self.context_value)
        if audience is not None:
            try:
                variables = _frozen(self.variable_values.coerced)
            except TypeError:
                return executor
            executor.shared_key = (id(payload), id(self.operation), variables, audience)
        return executor

    def execute_operation(self, serially: bool | None = None) -> Any:
        key = self.shared_key
        if key is None:
            return super().execute_operation(serially)
        found = _results.get(key)
        now = time.monotonic()
        if (
            found is not None
            and found[0] is self.root_value
            and found[1] is self.operation
            and now - found[3] < SHARE_WINDOW_S
            and not _failed(found[2])
        ):
            return _own_copy(found[2])
        result = super().execute_operation(serially)
        if self.is_awaitable(result):  # a field read the database off the loop: one read
            result = asyncio.ensure_future(result)
        _results.keep(key, (self.root_value, self.operation, result, now))
        return _own_copy(result)


def _failed(result: Any) -> bool:
    """An answer with errors (or one still running, which may end with some) is not shared
    once known to have failed: the next subscriber runs the event again."""
    if isinstance(result, asyncio.Future):
        return result.done() and (
            result.cancelled() or result.exception() is not None or bool(result.result().errors)
        )
    return bool(result.errors)


def _own_copy(result: Any) -> Any:
    if isinstance(result, asyncio.Future):
        return _awaited_copy(result)
    return _copy(result)


async def _awaited_copy(shared: Awaitable[ExecutionResult]) -> ExecutionResult:
    # shielded: a subscriber that leaves while it waits does not cancel the others' answer
    return _copy(await asyncio.shield(shared))


def _copy(result: ExecutionResult) -> ExecutionResult:
    errors = list(result.errors) if result.errors else None
    return ExecutionResult(result.data, errors, result.extensions)
