"""The README's map (Layout: behaviour -> file) names files that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def map_rows() -> list[tuple[str, list[str]]]:
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| behaviour | file |") :].split("\n\n", 1)[0]
    rows = []
    for line in table.splitlines()[2:]:
        behaviour, files = line.strip("|").split("|", 1)
        rows.append((behaviour.strip(), re.findall(r"`([^`]+)`", files)))
    return rows


def test_every_file_the_readme_map_names_exists() -> None:
    rows = map_rows()
    assert len(rows) >= 10
    missing = [(b, f) for b, files in rows for f in files if not (ROOT / f).exists()]
    assert all(files for _, files in rows)
    assert missing == []
