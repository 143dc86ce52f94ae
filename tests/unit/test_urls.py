"""libpq's two spellings of several hosts, brought to the one every reader understands; a URL
is read as written or refused in words that quote none of it."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gql.http.settings import Settings
from repo.config import ConfigError
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


# Letters no refusal's words contain, and every character a password may hold by mistake:
# URL delimiters, and full-width ones that Unicode normalization turns into them.
SECRET_LETTERS = "QJXKWZVY"
PASSWORD_CHARACTERS = (
    SECRET_LETTERS + "0123456789/?#@[]:%,;=&+$!*'()~._- " + "\uff20\uff0f\uff1f\uff03\uff1a\uff3b"
)
HOSTS = ["db.internal", "10.0.0.7", "[::1]", "db1,db2", "db1:5432,[fe80::1%25eth0]", ""]
PORTS = st.one_of(
    st.none(),
    st.integers(min_value=0, max_value=99_999).map(str),
    st.sampled_from(["", "x", "+5", " 5", "\u0665", "5432]"]),
)


def secrets_in(text: str) -> list[str]:
    """The runs of two or more secret letters in ``text``: what must never be echoed."""
    return re.findall(f"[{SECRET_LETTERS}]{{2,}}", text)


@settings(max_examples=600, derandomize=True, database=None, deadline=None)
@given(
    user=st.text(alphabet=SECRET_LETTERS, min_size=2, max_size=6),
    password=st.text(alphabet=PASSWORD_CHARACTERS, min_size=1, max_size=16),
    host=st.sampled_from(HOSTS),
    port=PORTS,
)
@example(user="QQ", password="S3cret/PW", host="db.internal", port=None)
@example(user="QQ", password="QJ[XK", host="db.internal", port="5432")
@example(user="QQ", password="QJ?XK", host="db.internal", port="5432")
@example(user="QQ", password="QJ:XK", host="[::1", port=None)
def test_a_url_is_read_as_written_or_refused_without_quoting_it(
    user: str, password: str, host: str, port: str | None
) -> None:
    url = f"postgresql://{user}:{password}@{host}{'' if port is None else ':' + port}/chat"
    try:
        Settings.from_env({"DATABASE_URL": url})
    except ConfigError as refused:
        message = str(refused)
        assert message.startswith("DATABASE_URL: ") and "\n" not in message
        assert not [s for s in [*secrets_in(password), user] if s in message], message
        return
    kwargs = postgres_connect_kwargs(url)
    assert (kwargs["user"], kwargs["password"], kwargs["database"]) == (
        user,
        unquote(password),
        "chat",
    )


@pytest.mark.parametrize("name", ["DATABASE_URL", "LISTEN_DATABASE_URL", "REPLICA_DATABASE_URL"])
@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:S3cret/PW@host/db",
        "postgresql://u:S3cret@[::1/db",
        "postgresql://u:S3cret@host:S3cret/db",
        "postgresql://u:S3cr[et@host/db",
        "postgresql://u:S3cr\uff20et@host/db",
        "postgresql://u:S3cret@h1,,h2/db",
    ],
)
def test_each_url_variable_is_refused_in_one_line_naming_it(name: str, url: str) -> None:
    env = {"DATABASE_URL": "postgresql://helpline@db.internal/chat", name: url}
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env)
    message = str(refused.value)
    assert message.startswith(f"{name}: ") and "\n" not in message
    assert "S3cr" not in message and "u:" not in message
