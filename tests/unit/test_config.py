"""Settings fail fast, naming the variable and what is wrong with it."""

from __future__ import annotations

import dataclasses

import pytest

from gql.auth.settings import AuthSettings
from gql.graphql.settings import GraphQLSettings
from gql.http.settings import HttpSettings, Settings
from gql.observability.settings import ObservabilitySettings
from gql.ws.settings import WebSocketSettings
from repo.allowance import SendLimits
from repo.config import DEFAULT_DATABASE_URL, ConfigError, DatabaseSettings


def test_defaults_to_the_embedded_sqlite_database() -> None:
    settings = Settings.from_env({})
    assert settings.database.database_url == DEFAULT_DATABASE_URL == "sqlite:///chat.db"
    assert settings.database.is_sqlite


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"DATABASE_URL": "mysql://root@localhost/chat"},
            "DATABASE_URL: unsupported scheme 'mysql'",
        ),
        ({"DATABASE_URL": "sqlite://chat.db"}, "DATABASE_URL: a SQLite URL needs three slashes"),
        ({"DB_POOL_SIZE": "many"}, "DB_POOL_SIZE: expected an integer, got 'many'"),
        ({"DB_POOL_SIZE": "0"}, "DB_POOL_SIZE: must be at least 1"),
        ({"PARSE_CACHE_BYTES": "-1"}, "PARSE_CACHE_BYTES: must be at least 0, got -1"),
        ({"VALIDATION_CACHE_BYTES": "1 MiB"}, "VALIDATION_CACHE_BYTES: expected an integer"),
        ({"PLAN_CACHE_BYTES": "-1"}, "PLAN_CACHE_BYTES: must be at least 0"),
        ({"MAX_VALIDATION_COST": "10"}, "MAX_VALIDATION_COST: must be at least 100, got 10"),
        ({"DB_POOL_TIMEOUT": "-1"}, "DB_POOL_TIMEOUT: must be positive"),
        ({"WELCOME_MESSAGE": "  "}, "WELCOME_MESSAGE: must not be empty"),
        ({"ACCESS_LOG": "some"}, "ACCESS_LOG: expected one of all, errors, got 'some'"),
        (
            {"SHUTDOWN_TIMEOUT_SECONDS": "10"},
            r"SHUTDOWN_TIMEOUT_SECONDS: must be at least REQUEST_TIMEOUT_SECONDS \(20\), got 10",
        ),
        (
            {"MAX_HEADER_BYTES": "4096", "MAX_REQUEST_LINE_BYTES": "8192"},
            r"MAX_HEADER_BYTES: must be at least MAX_REQUEST_LINE_BYTES \(8192\), got 4096",
        ),
        ({"HEADER_TIMEOUT_SECONDS": "0"}, "HEADER_TIMEOUT_SECONDS: must be positive"),
        ({"MAX_CONNECTIONS": "1"}, "MAX_CONNECTIONS: must be at least 16"),
        ({"WS_MAX_SOCKETS_PER_CALLER": "0"}, "WS_MAX_SOCKETS_PER_CALLER: must be at least 1"),
        ({"WS_MAX_PENDING_PER_ADDRESS": "x"}, "WS_MAX_PENDING_PER_ADDRESS: expected an integer"),
        ({"WS_INIT_TIMEOUT_SECONDS": "0"}, "WS_INIT_TIMEOUT_SECONDS: must be positive"),
        (
            {"RATE_LIMIT_MESSAGES_PER_MINUTE": "0"},
            "RATE_LIMIT_MESSAGES_PER_MINUTE: must be at least 1, got 0",
        ),
    ],
)
def test_a_bad_setting_is_refused_in_words(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_postgres_urls_are_accepted() -> None:
    url = "postgresql://helpline:secret@db.internal:5433/chat"
    assert not Settings.from_env({"DATABASE_URL": url}).database.is_sqlite


def test_the_listener_connects_where_the_pool_does_unless_told_otherwise() -> None:
    pooled = "postgresql://helpline@pgbouncer.internal:6432/chat"
    direct = "postgresql://helpline@db.internal:5432/chat"

    assert Settings.from_env({"DATABASE_URL": pooled}).database.listen_url == pooled
    assert (
        Settings.from_env(
            {"DATABASE_URL": pooled, "LISTEN_DATABASE_URL": direct}
        ).database.listen_url
        == direct
    )


@pytest.mark.parametrize("name", ["LISTEN_DATABASE_URL", "REPLICA_DATABASE_URL"])
def test_listener_and_replica_urls_must_be_postgres_beside_postgres(name: str) -> None:
    postgres = "postgresql://helpline@db.internal/chat"
    with pytest.raises(ConfigError, match=f"{name}: unsupported scheme 'mysql'"):
        Settings.from_env({"DATABASE_URL": postgres, name: "mysql://root@db.internal/chat"})
    with pytest.raises(ConfigError, match=f"{name}: only for PostgreSQL; DATABASE_URL is SQLite"):
        Settings.from_env({name: postgres})


def test_the_caches_are_bounded_by_bytes_and_zero_turns_them_off() -> None:
    settings = Settings.from_env(
        {"PARSE_CACHE_BYTES": "0", "VALIDATION_CACHE_BYTES": "0", "PLAN_CACHE_BYTES": "1048576"}
    )
    assert (settings.graphql.parse_cache_bytes, settings.graphql.validation_cache_bytes) == (0, 0)
    assert settings.http.plan_cache_bytes == 1024 * 1024
    assert Settings.from_env({}).graphql.max_validation_cost == 3000


def test_fair_use_settings_are_read_with_their_defaults() -> None:
    defaults = Settings.from_env({})
    configured = Settings.from_env(
        {
            "WS_MAX_SOCKETS_PER_CALLER": "3",
            "WS_MAX_SUBSCRIPTIONS_PER_CALLER": "7",
            "WS_MAX_PENDING_PER_ADDRESS": "4",
            "WS_INIT_TIMEOUT_SECONDS": "2.5",
            "RATE_LIMIT_MESSAGES_PER_MINUTE": "30",
            "RATE_LIMIT_STAFF_MESSAGES_PER_MINUTE": "300",
        }
    )

    assert (
        defaults.ws.ws_max_sockets_per_caller,
        defaults.ws.ws_max_subscriptions_per_caller,
        defaults.ws.ws_max_pending_per_address,
        defaults.ws.ws_init_timeout_s,
        defaults.graphql.send_limits,
    ) == (10, 50, 20, 5.0, SendLimits(60, 600))
    assert (
        configured.ws.ws_max_sockets_per_caller,
        configured.ws.ws_max_subscriptions_per_caller,
        configured.ws.ws_max_pending_per_address,
        configured.ws.ws_init_timeout_s,
        configured.graphql.send_limits,
    ) == (3, 7, 4, 2.5, SendLimits(30, 300))


def test_every_variable_lives_in_one_section() -> None:
    sections = [
        {f.name for f in dataclasses.fields(kind)}
        for kind in (
            DatabaseSettings,
            HttpSettings,
            GraphQLSettings,
            WebSocketSettings,
            AuthSettings,
            ObservabilitySettings,
        )
    ]
    names = [name for section in sections for name in section]

    assert len(names) == len(set(names))
    assert Settings.of(ws_queue_size=3, db_pool_size=4).ws.ws_queue_size == 3
    with pytest.raises(TypeError, match="no setting named 'jwt_secrets'"):
        Settings.of(jwt_secrets="x")


def test_the_repository_is_given_its_own_section_only() -> None:
    settings = Settings.from_env({"DATABASE_URL": "sqlite:///x.db", "JWT_SECRET": "s" * 32})

    assert settings.database == DatabaseSettings(database_url="sqlite:///x.db")
    assert not hasattr(settings.database, "jwt_secret")
