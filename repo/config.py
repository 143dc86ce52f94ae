"""The repository's settings (where the database is, how long to wait on it), and the
readers every layer's settings use: a typed cast per variable, and one line naming a bad one.

The other layers' settings live with them (gql/http/settings.py gathers them); all are read
once, at start-up, from one environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from repo.urls import MalformedDatabaseUrl, check_postgres_url, unsupported_scheme, url_scheme

DEFAULT_DATABASE_URL = "sqlite:///chat.db"
SUPPORTED_SCHEMES = ("sqlite", "postgresql", "postgres")
POSTGRES_SCHEMES = ("postgresql", "postgres")
BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """What the repository reads: where the database is and how long to wait on it."""

    database_url: str = DEFAULT_DATABASE_URL
    listen_database_url: str | None = None
    replica_database_url: str | None = None
    db_pool_size: int = 40
    db_pool_timeout: float = 10.0
    sqlite_busy_timeout_ms: int = 5000
    db_statement_timeout_ms: int = 15_000
    db_lock_timeout_ms: int = 3_000
    db_idle_in_transaction_timeout_ms: int = 60_000
    db_connect_timeout_s: int = 5
    db_retry_attempts: int = 3

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DatabaseSettings:
        defaults = cls()
        return cls(
            database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            listen_database_url=env.get("LISTEN_DATABASE_URL") or None,
            replica_database_url=env.get("REPLICA_DATABASE_URL") or None,
            db_pool_size=read_int(env, "DB_POOL_SIZE", defaults.db_pool_size, minimum=1),
            db_pool_timeout=read_seconds(env, "DB_POOL_TIMEOUT", defaults.db_pool_timeout),
            sqlite_busy_timeout_ms=read_int(
                env, "SQLITE_BUSY_TIMEOUT_MS", defaults.sqlite_busy_timeout_ms, minimum=0
            ),
            db_statement_timeout_ms=read_int(
                env, "DB_STATEMENT_TIMEOUT_MS", defaults.db_statement_timeout_ms, minimum=0
            ),
            db_lock_timeout_ms=read_int(
                env, "DB_LOCK_TIMEOUT_MS", defaults.db_lock_timeout_ms, minimum=0
            ),
            db_idle_in_transaction_timeout_ms=read_int(
                env,
                "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS",
                defaults.db_idle_in_transaction_timeout_ms,
                minimum=0,
            ),
            # libpq treats a connect timeout below 2 s as 2 s; 0 would wait forever
            db_connect_timeout_s=read_int(
                env, "DB_CONNECT_TIMEOUT_SECONDS", defaults.db_connect_timeout_s, minimum=2
            ),
            db_retry_attempts=read_int(
                env, "DB_RETRY_ATTEMPTS", defaults.db_retry_attempts, minimum=1
            ),
        )

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


def read_bool(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(name) or "false").strip().lower()
    if raw not in BOOLEANS:
        raise ConfigError(f"{name}: expected true or false, got {env.get(name)!r}")
    return BOOLEANS[raw]


def read_int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
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


def read_seconds(env: Mapping[str, str], name: str, default: float) -> float:
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
