"""The alert rules and the dashboard parse, and name only metrics Helpline exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from gql import metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
EXPORTED = {
    collector._name
    for collector in [
        metrics.REQUESTS,
        metrics.LATENCY,
        metrics.ERRORS,
        metrics.CONVERSATIONS_CREATED,
        metrics.PROFILES_SELF_HEALED,
        metrics.FOREIGN_KEY_VIOLATIONS,
        metrics.ORPHANED_CONVERSATIONS,
        metrics.POOL_IN_USE,
        metrics.WEBSOCKET_CONNECTIONS,
    ]
}
SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def helpline_metrics(expression: str) -> set[str]:
    names = set(re.findall(r"\bhelpline_[a-z_]+", expression))
    return {next((n.removesuffix(s) for s in SUFFIXES if n.endswith(s)), n) for n in names}


def test_every_alert_uses_exported_metrics() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus-alerts.yml").read_text())["groups"][0]["rules"]
    used = set().union(*(helpline_metrics(rule["expr"]) for rule in rules))
    assert used and used <= EXPORTED, used - EXPORTED
    assert all(rule["labels"]["severity"] in {"critical", "warning", "info"} for rule in rules)


def test_every_dashboard_panel_uses_exported_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = set().union(*(helpline_metrics(e) for e in exprs))
    assert used == EXPORTED
