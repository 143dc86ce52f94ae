"""``ByteLRU``: a map bounded by the memory its entries hold, the least recently used going first.

Every cache of a process is one (§12: a cache is bounded by the memory it holds): parsed and
validated documents and fast-path plans (gql/graphql/caches.py, gql/fastpath/plans.py),
persisted-query documents (gql/persisted/queries.py), verified tokens (gql/auth/tokens.py).
Its user estimates what a value holds; the key's text and the entry itself are counted here.
An entry heavier than a MAX_ENTRY_SHARE-th of its cache is not kept at all, so a few large
entries never flush the small hot ones; its user only computes it again.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar, overload

# An entry's key tuple, its OrderedDict node and its recorded size (measured: 131 bytes).
ENTRY_OVERHEAD_BYTES = 160
MAX_ENTRY_SHARE = 16

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
D = TypeVar("D")


class ByteLRU(Generic[K, V]):
    """A map that keeps its most recently used entries within ``max_bytes`` (thread-safe).

    ``put`` is told what an entry weighs (its value's estimate; the key's text and the entry's
    overhead are added here). ``hits`` and ``misses`` count lookups, for tests and diagnostics.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()

    @overload
    def get(self, key: K) -> V | None: ...

    @overload
    def get(self, key: K, default: D) -> V | D: ...

    def get(self, key: K, default: object = None) -> object:
        """The value kept for ``key`` (now the most recently used), else ``default``."""
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.misses += 1
                return default
            self._entries.move_to_end(key)
            self.hits += 1
            return found[0]

    def put(self, key: K, value: V, value_bytes: int) -> None:
        """Keep ``value`` for ``key`` unless it would take more than its share; evict the least
        recently used entries until the total fits."""
        size = value_bytes + key_bytes(key) + ENTRY_OVERHEAD_BYTES
        if size * MAX_ENTRY_SHARE > self.max_bytes:
            return
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self.bytes -= previous[1]
            self._entries[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self.bytes -= evicted

    def discard(self, key: K) -> None:
        """Forget ``key``'s entry, if one is kept."""
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self.bytes -= previous[1]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[K]:
        with self._lock:
            return iter(list(self._entries))


def key_bytes(key: object) -> int:
    """The memory a key's own strings hold (shared objects, such as rule classes, aside)."""
    if isinstance(key, str):
        return sys.getsizeof(key)
    if isinstance(key, tuple):
        return sum(sys.getsizeof(part) for part in key if isinstance(part, str))
    return 0
