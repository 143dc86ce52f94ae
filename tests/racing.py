"""Calls that race: each in its own thread on its own pooled connection, released together."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from repo.database import database
from repo.errors import HelplineError

T = TypeVar("T")


def run_at_once(calls: list[Callable[[], T]]) -> list[T]:
    """Run every call in its own thread, released together by a barrier once each thread
    holds its pooled connection (opening one takes long enough to stagger the callers)."""
    barrier = threading.Barrier(len(calls))

    def released(call: Callable[[], T]) -> T:
        with database.connection_context():
            database.execute_sql("SELECT 1")
            barrier.wait(timeout=10)
            return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(released, calls))


def outcomes_at_once(calls: list[Callable[[], T]]) -> list[T | HelplineError]:
    """As ``run_at_once``, with each call's repository error as its outcome."""

    def caught(call: Callable[[], T]) -> Callable[[], T | HelplineError]:
        def run() -> T | HelplineError:
            try:
                return call()
            except HelplineError as exc:
                return exc

        return run

    return run_at_once([caught(call) for call in calls])
