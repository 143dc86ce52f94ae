"""A malformed database URL stops `helpline` with exit 2 and one line naming the variable,
quoting no part of the URL: where it is malformed, any part may be a password's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gql.ops.cli import main

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "S3cret"
MALFORMED = [
    f"postgresql://u:{PASSWORD}/PW@host/db",  # a '/' in the password: host 'u', port 'S3cret'
    f"postgresql://u:{PASSWORD}?x@host/db",
    f"postgresql://u:{PASSWORD}#x@host/db",
    f"postgresql://u:{PASSWORD}@[host/db",  # an unbalanced '['
    f"postgresql://u:{PASSWORD}[x@host/db",
    f"postgresql://u:{PASSWORD}@[::1/db",
    f"postgresql://u:{PASSWORD}@[{PASSWORD}]/db",
    f"postgresql://u:{PASSWORD}@host:{PASSWORD}/db",
    f"postgresql://u:{PASSWORD}@host:99999/db",
    f"postgresql://u:{PASSWORD}@h1:5432,h2:{PASSWORD}/db",
    f"postgresql://u:{PASSWORD}@h1,,h2/db",
    f"postgresql://u:{PASSWORD}\uff20x@host/db",  # a full-width '@': NFKC makes it an '@'
    f"u:{PASSWORD}@host/db",  # no scheme: 'u' would read as one
    f"mysql://u:{PASSWORD}@host/db",
]


def helpline_process(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "helpline"), "integrity", "check"],
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("url", MALFORMED)
def test_every_malformed_url_is_refused_in_one_line_without_its_password(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)

    assert main(["integrity", "check"]) == 2

    captured = capsys.readouterr()
    (line,) = (captured.out + captured.err).splitlines()
    assert line.startswith("helpline: DATABASE_URL: ")
    assert PASSWORD[:3] not in line and "u:" not in line


def test_the_command_exits_2_with_one_line_naming_the_variable() -> None:
    """As a process (one of each kind of mistake, at once: each start imports the app)."""
    runs = {
        name: helpline_process(
            {"DATABASE_URL": "postgresql://helpline@db.internal/chat", name: url}
        )
        for name, url in [
            ("DATABASE_URL", f"postgresql://u:{PASSWORD}/PW@host/db"),
            ("LISTEN_DATABASE_URL", f"postgresql://u:{PASSWORD}@[host/db"),
            ("REPLICA_DATABASE_URL", f"postgresql://u:{PASSWORD}@host:{PASSWORD}/db"),
        ]
    }
    for name, run in runs.items():
        out, err = run.communicate(timeout=60)
        assert run.returncode == 2, (name, out, err)
        (line,) = (out + err).splitlines()
        assert line.startswith(f"helpline: {name}: ") and PASSWORD[:3] not in line, line
