"""The one back-off: jittered exponential waits, for everything that tries again.

Used by the repository's retries of serialization failures, the LISTEN connection's
reconnect and a live subscription's wait for the database. Jittered so that the callers who
failed together (racing transactions, the subscriptions of a database that went away) do not
come back together.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """The n-th wait (n from 1) is drawn between half and all of ``first_s * 2**(n-1)``,
    capped at ``cap_s``."""

    first_s: float
    cap_s: float

    def delay_s(self, attempt: int) -> float:
        ceiling = min(self.cap_s, self.first_s * 2 ** (max(attempt, 1) - 1))
        return random.uniform(ceiling / 2, ceiling)
