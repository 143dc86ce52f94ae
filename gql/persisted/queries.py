"""Automatic persisted queries (APQ), Apollo's protocol: a client sends a document's SHA-256
instead of the document, and the document itself only when the server does not know it yet.

A request carries ``extensions.persistedQuery = {"version": 1, "sha256Hash": <hex>}``:
- with its ``query``: the hash must be the document's (else BAD_REQUEST); an authenticated
  caller's document is remembered, anonymous callers fill nothing;
- without it: the remembered document runs, or the answer is PERSISTED_QUERY_NOT_FOUND
  (message ``PersistedQueryNotFound``, HTTP 200 as Apollo Server answers, not cached), on which
  Apollo's link sends the request again with the document.

Documents are kept per process in a ``ByteLRU`` (gql/caching/lru.py), least recently used first
out, within a budget of the memory they hold (PERSISTED_QUERY_CACHE_BYTES); a document over a
MAX_ENTRY_SHARE-th of it is never kept, so its client is answered not found and sends it each
time. Another process, or this one after a restart, answers not found once and learns the
document again. Both HTTP paths (the executor's view and the
fast path) resolve requests here, so they answer alike.
"""

from __future__ import annotations

import hashlib
import re
import sys
from typing import Any

from gql.caching.lru import ByteLRU
from gql.graphql.errors import BAD_REQUEST

PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
NOT_FOUND_MESSAGE = "PersistedQueryNotFound"  # Apollo's link matches the message or the code
# Apollo Server's headers for it: a client must not cache the miss
NOT_FOUND_HEADERS = {"Cache-Control": "private, no-cache, must-revalidate"}
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class PersistedQueryError(Exception):
    """A persisted-query request that cannot run: its code and the HTTP status to answer."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.headers = NOT_FOUND_HEADERS if code == PERSISTED_QUERY_NOT_FOUND else {}


def persisted_query_hash(extensions: Any) -> str | None:
    """The ``sha256Hash`` a request's extensions ask for (None: not a persisted query).

    Raises PersistedQueryError (BAD_REQUEST) when ``persistedQuery`` is there but malformed.
    """
    if not isinstance(extensions, dict) or "persistedQuery" not in extensions:
        return None
    persisted = extensions["persistedQuery"]
    if not isinstance(persisted, dict) or persisted.get("version") != 1:
        raise PersistedQueryError(BAD_REQUEST, "Unsupported persisted query version", 400)
    digest = persisted.get("sha256Hash")
    if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest.lower()):
        raise PersistedQueryError(BAD_REQUEST, "persistedQuery.sha256Hash must be hex SHA-256", 400)
    return digest.lower()


class PersistedQueries:
    """The documents this process has learned, by SHA-256, within ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self._documents: ByteLRU[str, str] = ByteLRU(max_bytes)

    def document(self, digest: str, query: Any) -> str:
        """The document to run for a request with this hash and ``query`` (None: hash only).

        Raises PersistedQueryError: the hash is unknown, or is not ``query``'s.
        """
        if query is None:
            known = self._documents.get(digest)
            if known is None:
                raise PersistedQueryError(PERSISTED_QUERY_NOT_FOUND, NOT_FOUND_MESSAGE, 200)
            return known
        if not isinstance(query, str) or _sha256(query) != digest:
            raise PersistedQueryError(BAD_REQUEST, "provided sha does not match query", 400)
        return query

    def remember(self, digest: str, query: str) -> None:
        """Keep an authenticated caller's document that ran (not one that failed to parse or
        validate). It costs its text as Python holds it (a document with one character beyond
        U+FFFF holds 4 bytes for each of its characters, where UTF-8 counts 1 for ASCII); the
        cache adds its key's and the entry's."""
        if _sha256(query) != digest:  # never trust the caller to have checked
            return
        self._documents.put(digest, query, sys.getsizeof(query))

    def __len__(self) -> int:
        return len(self._documents)


def _sha256(query: str) -> str:
    # surrogatepass: a JSON body may carry a lone surrogate; it never matches a client's hash
    return hashlib.sha256(query.encode("utf-8", "surrogatepass")).hexdigest()
