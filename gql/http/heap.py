"""The collector's settings for a process that holds thousands of sockets for hours.

Python's cyclic garbage collector walks every tracked object of the oldest generation in one
pause, on the event loop. A worker holding thousands of open subscriptions has millions of them
(the sockets' protocol objects, tasks and generators), and those full collections paused it for
240-620 ms at a time under `make bench-realtime` (BENCHMARKS.md, issue #24): every frame due in
that moment waited, which is what set the delivery p99. Two well-known remedies, once per
process, when it starts serving:

- ``gc.freeze()`` after start-up: what the import and the app built (the schema, the modules,
  the caches' empty structures) lives as long as the process and is never garbage, so it is
  moved out of the collector's walks for good;
- a higher first threshold (GC_GEN0_THRESHOLD allocations instead of 700) so the young
  generations are collected, and older ones considered, an order of magnitude less often.
  Garbage without cycles is freed at once by reference counting as before; cyclic garbage waits
  a little longer.
"""

from __future__ import annotations

import gc

GC_GEN0_THRESHOLD = 10_000


def settle() -> None:
    """Freeze what start-up built and raise the first threshold (once per process: an app
    made again in the same process, as the tests do, freezes nothing more)."""
    gen0, gen1, gen2 = gc.get_threshold()
    if gen0 >= GC_GEN0_THRESHOLD:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)
