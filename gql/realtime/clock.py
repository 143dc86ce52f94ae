"""The conversations' clock: snoozed conversations wake at their time, and (with
AUTO_RESOLVE_AFTER_HOURS) quiet ones are resolved. Every server looks every few seconds
(repo/lifecycle.py's ``wake_snoozed`` and ``auto_resolve``: each conversation is changed once,
however many servers look), and once at start-up, so a server that was down catches up."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from datetime import timedelta

from anyio import to_thread
from prometheus_client import Counter

from gql.observability.metrics import CONVERSATIONS_REOPENED, CONVERSATIONS_RESOLVED
from repo import lifecycle

log = logging.getLogger("helpline.realtime")
WAKE_EVERY_S = 2.0  # a snoozed conversation opens within this (and a batch's time) of its time


class ConversationClock:
    """``resolve_after``: how long an open conversation whose last message is staff's stays
    open (None: for good)."""

    def __init__(
        self, *, every_s: float = WAKE_EVERY_S, resolve_after: timedelta | None = None
    ) -> None:
        self.every_s = every_s
        self.resolve_after = resolve_after
        self.stopping = asyncio.Event()
        self.running: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.running = asyncio.get_running_loop().create_task(self._wake_forever())

    async def stop(self) -> None:
        self.stopping.set()
        if self.running is not None:  # a pass in flight finishes: its thread holds a connection
            await self.running

    async def _wake_forever(self) -> None:
        while True:
            try:
                await self._in_batches(lifecycle.wake_snoozed, CONVERSATIONS_REOPENED, "snooze")
                if self.resolve_after is not None:
                    resolve = functools.partial(lifecycle.auto_resolve, self.resolve_after)
                    await self._in_batches(resolve, CONVERSATIONS_RESOLVED, "auto")
            except Exception as exc:  # the next pass tries again
                log.warning("conversations' clock not run: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.every_s)
                return

    async def _in_batches(self, job: Callable[[], int], counter: Counter, by: str) -> None:
        """Run ``job`` (a batch a call, in a worker thread) until a batch is not full."""
        while changed := await to_thread.run_sync(job):
            counter.labels(by).inc(changed)
            if changed < lifecycle.WAKE_BATCH or self.stopping.is_set():
                return
