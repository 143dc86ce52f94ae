"""The repository's settings (where the database is, how long to wait on it), and the
readers every layer's settings use: a typed cast per variable, and one line naming a bad one.

The other layers' settings live with them (gql/http/settings.py gathers them); all are read
once, at start-up, from one environment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from repo.urls import MalformedDatabaseUrl, check_postgres_url, unsupported_scheme, url_scheme

DEFAULT_DATABASE_URL = "sqlite:///chat.db"
SUPPORTED_SCHEMES = ("sqlite", "postgresql", "postgres")
POSTGRES_SCHEMES = ("postgresql", "postgres")
S = TypeVar("S")
BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def variable(
    name: str, default: Any, *, minimum: int | None = None, blank_is_default: bool = True
) -> Any:
    """A settings field read from the environment variable ``name`` by ``read_section``, with
    a reader that follows the default's type: an int, an integer of at least ``minimum``; a
    float, a positive number of seconds; a bool, true or false; a tuple, a comma-separated
    list; text (or None), as written, blank meaning the default unless ``blank_is_default``
    is False."""
    return field(
        default=default,
        metadata={"env": name, "minimum": minimum, "blank_is_default": blank_is_default},
    )


def read_section(kind: type[S], env: Mapping[str, str]) -> S:
    """A settings section (a dataclass of ``variable`` fields) read from ``env``: ConfigError
    names the first variable that is malformed."""
    values = {
        f.name: _read(env, f.metadata, f.default)
        for f in dataclasses.fields(kind)  # type: ignore[arg-type]
        if "env" in f.metadata
    }
    return kind(**values)


def _read(env: Mapping[str, str], meta: Mapping[str, Any], default: Any) -> Any:
    name = meta["env"]
    if isinstance(default, bool):
        return _read_bool(env, name)
    if isinstance(default, int):
        return _read_int(env, name, default, minimum=meta["minimum"])
    if isinstance(default, float):
        return _read_seconds(env, name, default)
    if isinstance(default, tuple):
        return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())
    raw = env.get(name)
    if meta["blank_is_default"]:
        return raw or default
    return default if raw is None else raw


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """What the repository reads: where the database is and how long to wait on it."""

    database_url: str = variable("DATABASE_URL", DEFAULT_DATABASE_URL)
    listen_database_url: str | None = variable("LISTEN_DATABASE_URL", None)
    replica_database_url: str | None = variable("REPLICA_DATABASE_URL", None)
    db_pool_size: int = variable("DB_POOL_SIZE", 40, minimum=1)
    db_pool_timeout: float = variable("DB_POOL_TIMEOUT", 10.0)
    sqlite_busy_timeout_ms: int = variable("SQLITE_BUSY_TIMEOUT_MS", 5000, minimum=0)
    db_statement_timeout_ms: int = variable("DB_STATEMENT_TIMEOUT_MS", 15_000, minimum=0)
    db_lock_timeout_ms: int = variable("DB_LOCK_TIMEOUT_MS", 3_000, minimum=0)
    db_idle_in_transaction_timeout_ms: int = variable(
        "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", 60_000, minimum=0
    )
    # libpq treats a connect timeout below 2 s as 2 s; 0 would wait forever
    db_connect_timeout_s: int = variable("DB_CONNECT_TIMEOUT_SECONDS", 5, minimum=2)
    db_retry_attempts: int = variable("DB_RETRY_ATTEMPTS", 3, minimum=1)

    def validate(self) -> None:
        """Raise ConfigError naming the first database setting that is unusable."""
        scheme = url_scheme(self.database_url)
        if scheme not in SUPPORTED_SCHEMES:
            raise ConfigError(
                f"DATABASE_URL: {unsupported_scheme(self.database_url)} "
                "(use sqlite:///path.db or postgresql://user@host:port/dbname)"
            )
        if scheme == "sqlite" and not self.database_url.startswith("sqlite:///"):
            raise ConfigError(
                "DATABASE_URL: a SQLite URL needs three slashes, e.g. sqlite:///chat.db"
            )
        if scheme in POSTGRES_SCHEMES:
            _readable_postgres_url("DATABASE_URL", self.database_url)
        self._validate_secondary_urls()
        statement, lock = self.db_statement_timeout_ms, self.db_lock_timeout_ms
        if statement and (lock == 0 or lock >= statement):  # else a lock wait reads as slow SQL
            raise ConfigError(
                f"DB_LOCK_TIMEOUT_MS: must be set and below DB_STATEMENT_TIMEOUT_MS "
                f"({statement}), got {lock}"
            )

    @property
    def is_sqlite(self) -> bool:
        return url_scheme(self.database_url) == "sqlite"

    @property
    def listen_url(self) -> str:
        """Where the realtime listener connects (LISTEN needs a session: no transaction pooler)."""
        return self.listen_database_url or self.database_url

    def _validate_secondary_urls(self) -> None:
        """The listener's and the replica's URLs: PostgreSQL ones, beside a PostgreSQL primary."""
        for name, url in (
            ("LISTEN_DATABASE_URL", self.listen_database_url),
            ("REPLICA_DATABASE_URL", self.replica_database_url),
        ):
            if url is None:
                continue
            if self.is_sqlite:
                raise ConfigError(
                    f"{name}: only for PostgreSQL; DATABASE_URL is SQLite (one process, one file)"
                )
            if url_scheme(url) not in POSTGRES_SCHEMES:
                raise ConfigError(
                    f"{name}: {unsupported_scheme(url)} (use postgresql://user@host:port/dbname)"
                )
            _readable_postgres_url(name, url)


def _readable_postgres_url(name: str, url: str) -> None:
    """A PostgreSQL URL read as written: one host, or several in either spelling; what is
    wrong said without quoting any of it (repo/urls.py)."""
    try:
        check_postgres_url(url)
    except MalformedDatabaseUrl as exc:
        raise ConfigError(f"{name}: {exc}") from None


def check_one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")


def _read_bool(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(name) or "false").strip().lower()
    if raw not in BOOLEANS:
        raise ConfigError(f"{name}: expected true or false, got {env.get(name)!r}")
    return BOOLEANS[raw]


def _read_int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum}, got {value}")
    return value


def _read_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name}: must be positive, got {raw}")
    return value
