"""Snoozed conversations wake at their time: every server looks for due ones every few seconds
(repo/lifecycle.py's ``wake_snoozed``: each wakes once, however many servers look), and once
at start-up, so a server that was down wakes what it missed."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from anyio import to_thread

from gql.observability.metrics import CONVERSATIONS_REOPENED
from repo import lifecycle

log = logging.getLogger("helpline.realtime")
WAKE_EVERY_S = 2.0  # a snoozed conversation opens within this (and a batch's time) of its time


class Waker:
    def __init__(self, *, every_s: float = WAKE_EVERY_S) -> None:
        self.every_s = every_s
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
                while woken := await to_thread.run_sync(lifecycle.wake_snoozed):
                    CONVERSATIONS_REOPENED.labels("snooze").inc(woken)
                    if woken < lifecycle.WAKE_BATCH or self.stopping.is_set():
                        break
            except Exception as exc:  # the next pass tries again
                log.warning("snoozed conversations not woken: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.every_s)
                return
