"""The alert rules and the dashboard parse, and name only metrics Helpline exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from gql.graphql.schema import build_schema
from gql.graphql.settings import GraphQLSettings
from gql.observability import metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
EXPORTED = {
    collector._name
    for collector in [
        metrics.REQUESTS,
        metrics.LATENCY,
        metrics.ERRORS,
        metrics.CONVERSATIONS_CREATED,
        metrics.CONVERSATIONS_ASSIGNED,
        metrics.PROFILES_SELF_HEALED,
        metrics.FOREIGN_KEY_VIOLATIONS,
        metrics.ORPHANED_CONVERSATIONS,
        metrics.POOL_IN_USE,
        metrics.WEBSOCKET_CONNECTIONS,
        metrics.REPLICA_LAG,
        metrics.REPLICA_FALLBACKS,
        metrics.CONNECTIONS_CLOSED,
        metrics.CONVERSATIONS_BY_STATUS,
        metrics.OLDEST_WAITING,
        metrics.RESPONSE_SECONDS,
        metrics.CONVERSATIONS_RESOLVED,
        metrics.CONVERSATIONS_REOPENED,
    ]
}
SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def helpline_metrics(expression: str) -> set[str]:
    names = set(re.findall(r"\bhelpline_[a-z_]+", expression))
    return {next((n.removesuffix(s) for s in SUFFIXES if n.endswith(s)), n) for n in names}


def operation_labels(expression: str) -> set[str]:
    return set(re.findall(r'operation="([^"]*)"', expression))


def could_be_exported(label: str) -> bool:
    """Whether Helpline can label an operation so: a type and some of its root fields."""
    if label in {metrics.INVALID_OPERATION, metrics.REFUSED_OPERATION}:
        return True
    kind, _, fields = label.partition(" ")
    schema = build_schema(GraphQLSettings())._schema
    root = {"query": schema.query_type, "mutation": schema.mutation_type}.get(kind)
    names = fields.split(",")
    return root is not None and names == sorted(set(names)) and set(names) <= set(root.fields)


def test_could_be_exported_tells_labels_from_operation_names() -> None:
    assert could_be_exported("mutation adminConversation")
    assert could_be_exported("query adminConversation,inbox")
    assert not could_be_exported("OpenChatWidget")
    assert not could_be_exported("mutation inbox")


def test_every_alert_uses_exported_metrics() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus-alerts.yml").read_text())["groups"][0]["rules"]
    used = set().union(*(helpline_metrics(rule["expr"]) for rule in rules))
    assert used and used <= EXPORTED, used - EXPORTED
    labels = set().union(*(operation_labels(rule["expr"]) for rule in rules))
    assert labels and all(could_be_exported(label) for label in labels), labels
    assert all(rule["labels"]["severity"] in {"critical", "warning", "info"} for rule in rules)


def test_every_dashboard_panel_uses_exported_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = set().union(*(helpline_metrics(e) for e in exprs))
    assert used == EXPORTED
    labels = set().union(*(operation_labels(e) for e in exprs))
    assert labels and all(could_be_exported(label) for label in labels), labels
