"""Prometheus metrics (prometheus-client; multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set).

Label values are bounded: operation names are capped per process (the rest share "other"),
error codes and constraint names come from closed sets.
"""

from __future__ import annotations

import os
import re
import threading
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from repo.db import pool_connections_in_use
from repo.integrity import count_orphaned_conversations

MAX_OPERATION_NAMES = 50
ORPHANS_REFRESH_SECONDS = 60.0
_OPERATION_NAME = re.compile(r"\s*(?:query|mutation|subscription)\s+([A-Za-z_][A-Za-z0-9_]{0,63})")

REQUESTS = Counter(
    "helpline_graphql_requests_total", "GraphQL operations served, by operation name", ["operation"]
)
LATENCY = Histogram(
    "helpline_graphql_request_duration_seconds",
    "Time to answer a GraphQL operation, by operation name",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ERRORS = Counter("helpline_graphql_errors_total", "GraphQL errors, by extensions.code", ["code"])
REQUESTS_SHED = Counter(
    "helpline_http_requests_shed_total",
    "HTTP requests answered 503 at once because MAX_CONCURRENT_REQUESTS were in flight",
)
CONVERSATIONS_CREATED = Counter(
    "helpline_conversations_created_total", "Admin conversations created on first contact"
)
PROFILES_SELF_HEALED = Counter(
    "helpline_profiles_self_healed_total",
    "Profiles created for customers who had none: each is a time the post-mortem's bug would "
    "have struck",
)
FOREIGN_KEY_VIOLATIONS = Counter(
    "helpline_foreign_key_violations_total",
    "Foreign-key violations caught, by constraint name (should stay 0)",
    ["constraint"],
)
ORPHANED_CONVERSATIONS = Gauge(
    "helpline_orphaned_conversations",
    "Conversations whose customer has no profile (refreshed at most once a minute)",
    multiprocess_mode="mostrecent",
)
POOL_IN_USE = Gauge(
    "helpline_db_pool_connections_in_use",
    "Pooled database connections checked out",
    multiprocess_mode="livesum",
)
WEBSOCKET_CONNECTIONS = Gauge(
    "helpline_websocket_connections",
    "WebSockets this process holds open (one series per worker pid in multiprocess mode)",
    multiprocess_mode="liveall",
)


class _OperationNames:
    """The first MAX_OPERATION_NAMES names seen keep their own label; the rest are "other"."""

    def __init__(self) -> None:
        self.known: set[str] = set()
        self.lock = threading.Lock()

    def label(self, query: str | None, operation_name: str | None, *, admit: bool) -> str:
        """The label for an operation; only ``admit``ted ones (authenticated, valid) add names."""
        name = operation_name
        if name is None and query and (match := _OPERATION_NAME.match(query)):
            name = match.group(1)
        if not name:
            return "anonymous"
        with self.lock:
            if name in self.known:
                return name
            if admit and len(self.known) < MAX_OPERATION_NAMES and re.fullmatch(r"\w{1,64}", name):
                self.known.add(name)
                return name
        return "other"


operation_label = _OperationNames().label


def record_operation(operation: str, seconds: float, codes: list[str]) -> None:
    POOL_IN_USE.set(pool_connections_in_use())
    REQUESTS.labels(operation).inc()
    LATENCY.labels(operation).observe(seconds)
    for code in codes:
        ERRORS.labels(code).inc()


class _OrphanGauge:
    """Counts orphans on scrape, but at most once per ORPHANS_REFRESH_SECONDS."""

    def __init__(self) -> None:
        self.refreshed_at = float("-inf")
        self.lock = threading.Lock()

    def refresh(self) -> None:
        with self.lock:
            if time.monotonic() - self.refreshed_at < ORPHANS_REFRESH_SECONDS:
                return
            self.refreshed_at = time.monotonic()
        ORPHANED_CONVERSATIONS.set(count_orphaned_conversations())


refresh_orphan_gauge = _OrphanGauge().refresh


def forget_this_process() -> None:
    """At shutdown in multiprocess mode: drop this worker's live gauges from the totals."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def exposition() -> tuple[bytes, str]:
    """The metrics page: this process's registry, or every worker's in multiprocess mode."""
    POOL_IN_USE.set(pool_connections_in_use())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
