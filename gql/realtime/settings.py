"""The realtime room's settings: its background jobs on conversations."""

from __future__ import annotations

from dataclasses import dataclass

from repo.config import variable


@dataclass(frozen=True, slots=True)
class RealtimeSettings:
    # resolve open conversations whose last message is staff's and this many hours old
    # (0: never); never one whose customer waits, never a snoozed one
    auto_resolve_after_hours: int = variable("AUTO_RESOLVE_AFTER_HOURS", 0, minimum=0)
