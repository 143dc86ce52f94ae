"""The product's guarantees, checked on the bound database after a race or a fault."""

from __future__ import annotations

from repo.checks import VIOLATION, run_checks
from repo.database import database


def assert_guarantees_hold() -> None:
    """No orphaned conversation, no customer with two, none without its welcome message."""
    violations = [check.as_dict() for check in run_checks() if check.status == VIOLATION]
    assert violations == []
    with database.connection_context():
        (without_welcome,) = database.execute_sql(
            "SELECT count(*) FROM conversations c "
            "WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id)"
        ).fetchone()
    assert without_welcome == 0, f"{without_welcome} conversations lack their welcome message"
