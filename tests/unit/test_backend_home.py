"""What differs between SQLite and PostgreSQL is decided in repo/backend.py (and the binding,
repo/database.py): repository code reads the same on both backends."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOMES = {"repo/backend.py", "repo/database.py"}


def test_only_the_backend_module_and_the_binding_ask_which_backend_is_bound() -> None:
    asking = sorted(
        str(path.relative_to(ROOT))
        for folder in ("repo", "gql")
        for path in (ROOT / folder).rglob("*.py")
        if re.search(r"\bis_sqlite\(\)", path.read_text())
    )

    assert set(asking) <= HOMES
    assert "repo/backend.py" in asking
