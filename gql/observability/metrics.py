"""Prometheus metrics (prometheus-client; multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set).

Label values are bounded by the schema, never chosen by callers: an operation is labelled by
its type and root fields (``mutation adminConversation``), a document that does not parse or
validate by ``invalid`` and a request refused before its document was read by ``refused``;
error codes and constraint names come from closed sets. Client-chosen operation names go to
the access log only.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionSetNode,
    get_operation_ast,
)
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import REGISTRY, Collector
from prometheus_client.samples import Sample
from strawberry.extensions import SchemaExtension

from repo.conversations import assignment_totals
from repo.database import bound_settings, pool_connections_in_use
from repo.integrity import count_orphaned_conversations
from repo.lifecycle import status_figures
from repo.units import replica_lag_seconds

ORPHANS_REFRESH_SECONDS = 60.0
INVALID_OPERATION = "invalid"  # the document did not parse or validate
REFUSED_OPERATION = "refused"  # refused before its document was read (body, token, capacity)

REQUESTS = Counter(
    "helpline_graphql_requests_total",
    "GraphQL operations served, by operation type and root fields",
    ["operation"],
)
LATENCY = Histogram(
    "helpline_graphql_request_duration_seconds",
    "Time to answer a GraphQL operation, by operation type and root fields",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ERRORS = Counter("helpline_graphql_errors_total", "GraphQL errors, by extensions.code", ["code"])
REQUESTS_SHED = Counter(
    "helpline_http_requests_shed_total",
    "HTTP requests answered 503 at once because MAX_CONCURRENT_REQUESTS were in flight",
)
CONNECTIONS_CLOSED = Counter(
    "helpline_http_connections_closed_total",
    "HTTP connections the transport closed, by reason: a head too large (head_too_large, "
    "too_many_headers, request_line_too_long), too slow (header_timeout, body_timeout), or "
    "the longest waiting one at MAX_CONNECTIONS (evicted)",
    ["reason"],
)
CONVERSATIONS_CREATED = Counter(
    "helpline_conversations_created_total", "Admin conversations created on first contact"
)
CONVERSATIONS_ASSIGNED = Counter(
    "helpline_conversations_assigned_total",
    "Conversations given to an admin, by reason: first_contact and reassigned counted by the "
    "servers, admin_removed (helpline admin remove --reassign) read from the database",
    ["reason"],
)
for _reason in ("first_contact", "reassigned"):
    CONVERSATIONS_ASSIGNED.labels(_reason)  # exported as 0 before the first one
CONVERSATIONS_RESOLVED = Counter(
    "helpline_conversations_resolved_total",
    "Conversations resolved, by who: admin (resolveConversation, admins and service_role), "
    "auto (AUTO_RESOLVE_AFTER_HOURS)",
    ["by"],
)
CONVERSATIONS_REOPENED = Counter(
    "helpline_conversations_reopened_total",
    "Resolved or snoozed conversations opened again, by what: customer (their message), admin "
    "(reopenConversation), snooze (its time came)",
    ["by"],
)
for _by in ("admin", "auto"):
    CONVERSATIONS_RESOLVED.labels(_by)
for _by in ("customer", "admin", "snooze"):
    CONVERSATIONS_REOPENED.labels(_by)
RESPONSE_SECONDS = Histogram(
    "helpline_response_seconds",
    "How long customers waited for staff: each wait, from the customer's oldest unanswered "
    "message to the staff message that answered it",
    buckets=(10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 72 * 3600),
)
CONVERSATIONS_BY_STATUS = Gauge(
    "helpline_conversations",
    "Conversations by status (OPEN, SNOOZED, RESOLVED), read from the database on each scrape",
    ["status"],
    multiprocess_mode="mostrecent",
)
OLDEST_WAITING = Gauge(
    "helpline_oldest_waiting_seconds",
    "How long the longest-waiting customer of an open or snoozed conversation has waited for "
    "staff (0 when nobody waits), read from the database on each scrape",
    multiprocess_mode="mostrecent",
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
REPLICA_LAG = Gauge(
    "helpline_replica_lag_seconds",
    "How far REPLICA_DATABASE_URL's replay trails the primary (0 when it has replayed all it "
    "received; NaN when it cannot be reached), read on each scrape",
    multiprocess_mode="mostrecent",
)
REPLICA_FALLBACKS = Counter(
    "helpline_replica_fallbacks_total",
    "Integrity reads that went to the primary because the replica could not be reached",
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


def operation_label(document: DocumentNode, operation_name: str | None) -> str:
    """The metric label of a valid document's operation: its type and root fields, sorted."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return INVALID_OPERATION
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    fields = sorted(_root_fields(operation.selection_set, fragments, set()))
    return f"{operation.operation.value} {','.join(fields)}"


class OperationLabel(SchemaExtension):
    """Puts the operation's metric label in the context as ``operation_label`` once it has
    validated (a document that fails is ``invalid``), and its name as ``operation_name``
    (the client's ``operationName``, else the name in the document) for the access log."""

    def on_validate(self) -> Iterator[None]:
        yield
        execution = self.execution_context
        document = execution.graphql_document
        if not isinstance(execution.context, dict) or document is None:
            return
        operation = get_operation_ast(document, execution.operation_name)
        if operation is not None and operation.name is not None:
            execution.context["operation_name"] = operation.name.value
        if not execution.pre_execution_errors:
            execution.context["operation_label"] = operation_label(
                document, execution.operation_name
            )


def _root_fields(
    selection_set: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode], seen: set[str]
) -> set[str]:
    names: set[str] = set()
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            names.add(selection.name.value)
        elif isinstance(selection, InlineFragmentNode):
            names |= _root_fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
            seen.add(selection.name.value)
            if fragment := fragments.get(selection.name.value):
                names |= _root_fields(fragment.selection_set, fragments, seen)
    return names


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


def refresh_status_figures() -> None:
    """Conversations by status, and the longest wait, read into their gauges."""
    figures = status_figures()
    for status, count in figures.by_status.items():
        CONVERSATIONS_BY_STATUS.labels(status).set(count)
    since = figures.oldest_waiting_since
    OLDEST_WAITING.set(0 if since is None else max((datetime.now(UTC) - since).total_seconds(), 0))


def refresh_replica_lag() -> None:
    """Read the replica's lag into its gauge (nothing without REPLICA_DATABASE_URL). NaN until
    the read succeeds: a replica that cannot be reached, or answers too late for the scrape,
    must not keep showing its last lag."""
    if bound_settings().replica_database_url is None:
        return
    REPLICA_LAG.set(float("nan"))
    lag = replica_lag_seconds()
    if lag is not None:
        REPLICA_LAG.set(lag)


# What /metrics reads from the database on each scrape, each on its own: (what, read), where
# read returns assignment totals for exposition() or None (it set its gauges itself).
DATABASE_FIGURES: tuple[tuple[str, Callable[[], dict[str, int] | None]], ...] = (
    ("orphan gauge", refresh_orphan_gauge),
    ("status figures", refresh_status_figures),
    ("replica lag", refresh_replica_lag),
    ("assignment totals", assignment_totals),
)


def forget_this_process() -> None:
    """At shutdown in multiprocess mode: drop this worker's live gauges from the totals."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class _WithDatabaseTotals(Collector):
    """A registry's metrics with the database's assignment totals added to their counter.

    A command that reassigns conversations exits before any scrape, so it counts in the
    database instead; its totals are global already and are added once per scrape, after
    the processes' own series are summed, as series of the same family.
    """

    def __init__(self, source: Collector, totals: Mapping[str, int]) -> None:
        self.source = source
        self.totals = totals

    def collect(self) -> Iterable[Metric]:
        for metric in self.source.collect():
            if metric.name == CONVERSATIONS_ASSIGNED._name:
                sample = f"{metric.name}_total"
                for reason, total in sorted(self.totals.items()):
                    metric.samples.append(Sample(sample, {"reason": reason}, float(total)))
            yield metric


def exposition(database_totals: Mapping[str, int]) -> tuple[bytes, str]:
    """The metrics page: this process's registry, or every worker's in multiprocess mode,
    with ``database_totals`` (reason: conversations) in helpline_conversations_assigned_total
    (empty when the database could not be read: those series are left out, not zeroed)."""
    POOL_IN_USE.set(pool_connections_in_use())
    source: Collector = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        source = CollectorRegistry()
        multiprocess.MultiProcessCollector(source)  # type: ignore[no-untyped-call]
    page = CollectorRegistry(auto_describe=False)
    page.register(_WithDatabaseTotals(source, database_totals))
    return generate_latest(page), CONTENT_TYPE_LATEST
