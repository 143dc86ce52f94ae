"""libpq's two spellings of several hosts, brought to the one every reader understands."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from repo.pool import postgres_connect_kwargs
from repo.urls import MalformedDatabaseUrl, hosts_in_query


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("postgresql://h@db1:5432,db2:5433/helpline", "db1,db2", "5432,5433"),
        ("postgresql://h@db1,db2:5433/helpline", "db1,db2", ",5433"),  # libpq's default first
        ("postgresql://h@[::1]:5432,127.0.0.1/helpline", "::1,127.0.0.1", "5432,"),
        ("postgresql://h@%2Frun%2Fpg,db2/helpline", "/run/pg,db2", None),  # a socket directory
    ],
)
def test_a_list_of_hosts_moves_to_the_query(url: str, host: str, port: str | None) -> None:
    query = parse_qs(urlsplit(hosts_in_query(url)).query, keep_blank_values=True)

    assert query["host"] == [host]
    assert query.get("port") == ([port] if port is not None else None)
    kwargs = postgres_connect_kwargs(url)
    assert (kwargs["host"], kwargs.get("port"), kwargs["database"]) == (host, port, "helpline")


def test_everything_else_is_kept() -> None:
    url = "postgresql://helpline:p%40ss,word@db1:5432,db2:5432/helpline?target_session_attrs=read-write"

    kwargs = postgres_connect_kwargs(url)

    assert kwargs["user"] == "helpline" and kwargs["password"] == "p@ss,word"
    assert kwargs["target_session_attrs"] == "read-write"
    assert hosts_in_query("postgresql://helpline@db1:5432/helpline") == (
        "postgresql://helpline@db1:5432/helpline"  # one host: untouched
    )


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://h@db1:5432,db2:54x/helpline",
        "postgresql://h@db1:99999,db2/helpline",
        "postgresql://h@db1,,db2/helpline",
    ],
)
def test_a_list_libpq_could_not_use_is_refused_with_a_reason(url: str) -> None:
    with pytest.raises(MalformedDatabaseUrl):
        postgres_connect_kwargs(url)
