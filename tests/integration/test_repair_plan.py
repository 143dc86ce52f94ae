"""A guard on PostgreSQL's plan for a repair batch (it once made repairs quadratic)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gql.http.settings import Settings
from repo.database import database
from repo.integrity import _orphans_after
from repo.models import Conversation
from tests.factories import make_admin, make_orphaned_conversation, make_user


def test_a_repair_batch_probes_profiles_per_row_instead_of_joining_them_all(
    postgres: Settings,
) -> None:
    make_orphaned_conversation(make_user(), make_admin())
    batch = _orphans_after(None).order_by(Conversation.customer).limit(1000)
    sql, params = batch.sql()
    with database.connection_context():
        database.execute_sql("ANALYZE")
        (plan,) = database.execute_sql(f"EXPLAIN (FORMAT JSON) {sql}", params).fetchone()

    nodes = list(_plan_nodes(plan[0]["Plan"]))
    joins_over_profiles = [
        n
        for n in nodes
        if n["Node Type"] in ("Hash Join", "Merge Join")
        and any(c.get("Relation Name") == "profiles" for c in _plan_nodes(n))
    ]
    assert joins_over_profiles == []  # that join made repairing 1,000,000 orphans quadratic
    probes = [n for n in nodes if n.get("Parent Relationship") == "SubPlan"]
    assert any(n.get("Relation Name") == "profiles" for p in probes for n in _plan_nodes(p))


def _plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", ()):
        yield from _plan_nodes(child)
