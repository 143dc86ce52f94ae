"""Settings, read from the environment once and validated at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from repo.urls import MalformedDatabaseUrl, check_postgres_url, unsupported_scheme, url_scheme

DEFAULT_DATABASE_URL = "sqlite:///chat.db"
DEFAULT_WELCOME_MESSAGE = "Hi! Thanks for reaching out. How can we help you today?"
SUPPORTED_SCHEMES = ("sqlite", "postgresql", "postgres")
POSTGRES_SCHEMES = ("postgresql", "postgres")
MAX_WELCOME_MESSAGE_LENGTH = 4000
APP_ENVS = ("development", "production")
ACCESS_LOGS = ("all", "errors")
MIN_JWT_SECRET_LENGTH = 32
BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True, slots=True)
class SendLimits:
    """Messages a minute per sender: a customer in their own conversation, and staff
    (repo/allowance.py)."""

    customer_per_minute: int
    staff_per_minute: int


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    listen_database_url: str | None = None
    replica_database_url: str | None = None
    welcome_message: str = DEFAULT_WELCOME_MESSAGE
    db_pool_size: int = 40
    db_pool_timeout: float = 10.0
    sqlite_busy_timeout_ms: int = 5000
    db_statement_timeout_ms: int = 15_000
    db_lock_timeout_ms: int = 3_000
    db_idle_in_transaction_timeout_ms: int = 60_000
    db_connect_timeout_s: int = 5
    db_retry_attempts: int = 3
    max_concurrent_requests: int = 200
    shutdown_timeout_s: int = 25
    request_timeout_s: float = 20.0
    app_env: str = "development"
    jwt_secret: str | None = None
    jwt_jwks: str | None = None
    jwt_audience: str = "authenticated"
    cors_origins: tuple[str, ...] = ()
    metrics_token: str | None = None
    metrics_unprotected: bool = False
    max_body_bytes: int = 64 * 1024
    max_request_line_bytes: int = 8192
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_connections: int = 10_000
    max_query_depth: int = 10
    max_aliases: int = 15
    max_tokens: int = 2000
    max_fields: int = 2000
    max_validation_cost: int = 3000
    parse_cache_bytes: int = 16 * 1024 * 1024
    validation_cache_bytes: int = 1024 * 1024
    plan_cache_bytes: int = 8 * 1024 * 1024
    web_concurrency: int = 1
    ws_max_connections: int = 1000
    ws_max_subscriptions: int = 20
    ws_max_sockets_per_caller: int = 10
    ws_max_subscriptions_per_caller: int = 50
    ws_max_pending_per_address: int = 20
    ws_init_timeout_s: float = 5.0
    rate_limit_messages_per_minute: int = 60
    rate_limit_staff_messages_per_minute: int = 600
    ws_queue_size: int = 256
    ws_send_timeout_s: float = 10.0
    ws_per_message_deflate: bool = False
    presence_heartbeat_s: float = 15.0
    access_log: str = "all"
    persisted_query_cache_bytes: int = 8 * 1024 * 1024
    max_token_bytes: int = 16 * 1024
    token_cache_bytes: int = 16 * 1024 * 1024

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from environment variables, raising ConfigError on bad values."""
        env = os.environ if environ is None else environ
        defaults = cls()
        settings = cls(
            database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            listen_database_url=env.get("LISTEN_DATABASE_URL") or None,
            replica_database_url=env.get("REPLICA_DATABASE_URL") or None,
            welcome_message=env.get("WELCOME_MESSAGE", DEFAULT_WELCOME_MESSAGE),
            db_pool_size=_int(env, "DB_POOL_SIZE", defaults.db_pool_size, minimum=1),
            db_pool_timeout=_float(env, "DB_POOL_TIMEOUT", defaults.db_pool_timeout),
            sqlite_busy_timeout_ms=_int(
                env, "SQLITE_BUSY_TIMEOUT_MS", defaults.sqlite_busy_timeout_ms, minimum=0
            ),
            db_statement_timeout_ms=_int(
                env, "DB_STATEMENT_TIMEOUT_MS", defaults.db_statement_timeout_ms, minimum=0
            ),
            db_lock_timeout_ms=_int(
                env, "DB_LOCK_TIMEOUT_MS", defaults.db_lock_timeout_ms, minimum=0
            ),
            db_idle_in_transaction_timeout_ms=_int(
                env,
                "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS",
                defaults.db_idle_in_transaction_timeout_ms,
                minimum=0,
            ),
            # libpq treats a connect timeout below 2 s as 2 s; 0 would wait forever
            db_connect_timeout_s=_int(
                env, "DB_CONNECT_TIMEOUT_SECONDS", defaults.db_connect_timeout_s, minimum=2
            ),
            db_retry_attempts=_int(env, "DB_RETRY_ATTEMPTS", defaults.db_retry_attempts, minimum=1),
            max_concurrent_requests=_int(
                env, "MAX_CONCURRENT_REQUESTS", defaults.max_concurrent_requests, minimum=1
            ),
            shutdown_timeout_s=_int(
                env, "SHUTDOWN_TIMEOUT_SECONDS", defaults.shutdown_timeout_s, minimum=1
            ),
            request_timeout_s=_float(env, "REQUEST_TIMEOUT_SECONDS", defaults.request_timeout_s),
            app_env=env.get("APP_ENV") or defaults.app_env,
            jwt_secret=env.get("JWT_SECRET") or None,
            jwt_jwks=env.get("JWT_JWKS") or None,
            jwt_audience=env.get("JWT_AUDIENCE") or defaults.jwt_audience,
            cors_origins=tuple(
                origin.strip()
                for origin in env.get("CORS_ORIGINS", "").split(",")
                if origin.strip()
            ),
            metrics_token=env.get("METRICS_TOKEN") or None,
            metrics_unprotected=_bool(env, "METRICS_UNPROTECTED"),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", defaults.max_body_bytes, minimum=1024),
            max_request_line_bytes=_int(
                env, "MAX_REQUEST_LINE_BYTES", defaults.max_request_line_bytes, minimum=256
            ),
            max_header_bytes=_int(env, "MAX_HEADER_BYTES", defaults.max_header_bytes, minimum=4096),
            max_headers=_int(env, "MAX_HEADERS", defaults.max_headers, minimum=16),
            header_timeout_s=_float(env, "HEADER_TIMEOUT_SECONDS", defaults.header_timeout_s),
            body_timeout_s=_float(env, "BODY_TIMEOUT_SECONDS", defaults.body_timeout_s),
            max_connections=_int(env, "MAX_CONNECTIONS", defaults.max_connections, minimum=16),
            persisted_query_cache_bytes=_int(
                env,
                "PERSISTED_QUERY_CACHE_BYTES",
                defaults.persisted_query_cache_bytes,
                minimum=0,
            ),
            max_token_bytes=_int(env, "MAX_TOKEN_BYTES", defaults.max_token_bytes, minimum=1024),
            token_cache_bytes=_int(env, "TOKEN_CACHE_BYTES", defaults.token_cache_bytes, minimum=0),
            max_query_depth=_int(env, "MAX_QUERY_DEPTH", defaults.max_query_depth, minimum=2),
            max_aliases=_int(env, "MAX_ALIASES", defaults.max_aliases, minimum=1),
            max_tokens=_int(env, "MAX_TOKENS", defaults.max_tokens, minimum=100),
            max_fields=_int(env, "MAX_FIELDS", defaults.max_fields, minimum=10),
            max_validation_cost=_int(
                env, "MAX_VALIDATION_COST", defaults.max_validation_cost, minimum=100
            ),
            parse_cache_bytes=_int(env, "PARSE_CACHE_BYTES", defaults.parse_cache_bytes, minimum=0),
            validation_cache_bytes=_int(
                env, "VALIDATION_CACHE_BYTES", defaults.validation_cache_bytes, minimum=0
            ),
            plan_cache_bytes=_int(env, "PLAN_CACHE_BYTES", defaults.plan_cache_bytes, minimum=0),
            web_concurrency=_int(env, "WEB_CONCURRENCY", defaults.web_concurrency, minimum=1),
            ws_max_connections=_int(
                env, "WS_MAX_CONNECTIONS", defaults.ws_max_connections, minimum=1
            ),
            ws_max_subscriptions=_int(
                env, "WS_MAX_SUBSCRIPTIONS", defaults.ws_max_subscriptions, minimum=1
            ),
            ws_max_sockets_per_caller=_int(
                env, "WS_MAX_SOCKETS_PER_CALLER", defaults.ws_max_sockets_per_caller, minimum=1
            ),
            ws_max_subscriptions_per_caller=_int(
                env,
                "WS_MAX_SUBSCRIPTIONS_PER_CALLER",
                defaults.ws_max_subscriptions_per_caller,
                minimum=1,
            ),
            ws_max_pending_per_address=_int(
                env, "WS_MAX_PENDING_PER_ADDRESS", defaults.ws_max_pending_per_address, minimum=1
            ),
            ws_init_timeout_s=_float(env, "WS_INIT_TIMEOUT_SECONDS", defaults.ws_init_timeout_s),
            rate_limit_messages_per_minute=_int(
                env,
                "RATE_LIMIT_MESSAGES_PER_MINUTE",
                defaults.rate_limit_messages_per_minute,
                minimum=1,
            ),
            rate_limit_staff_messages_per_minute=_int(
                env,
                "RATE_LIMIT_STAFF_MESSAGES_PER_MINUTE",
                defaults.rate_limit_staff_messages_per_minute,
                minimum=1,
            ),
            ws_queue_size=_int(env, "WS_QUEUE_SIZE", defaults.ws_queue_size, minimum=1),
            ws_send_timeout_s=_float(env, "WS_SEND_TIMEOUT_SECONDS", defaults.ws_send_timeout_s),
            ws_per_message_deflate=_bool(env, "WS_PER_MESSAGE_DEFLATE"),
            presence_heartbeat_s=_float(
                env, "PRESENCE_HEARTBEAT_SECONDS", defaults.presence_heartbeat_s
            ),
            access_log=env.get("ACCESS_LOG") or defaults.access_log,
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ConfigError naming the first setting that is unusable."""
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
        self._validate_timeouts()
        self._validate_head_limits()
        if not self.welcome_message.strip():
            raise ConfigError("WELCOME_MESSAGE: must not be empty")
        if len(self.welcome_message) > MAX_WELCOME_MESSAGE_LENGTH:
            raise ConfigError(
                f"WELCOME_MESSAGE: at most {MAX_WELCOME_MESSAGE_LENGTH} characters (a message)"
            )
        _one_of("ACCESS_LOG", self.access_log, ACCESS_LOGS)
        _one_of("APP_ENV", self.app_env, APP_ENVS)
        if self.jwt_secret is not None and len(self.jwt_secret) < MIN_JWT_SECRET_LENGTH:
            raise ConfigError(
                f"JWT_SECRET: must be at least {MIN_JWT_SECRET_LENGTH} characters for HS256"
            )
        if self.is_production and not (self.jwt_secret or self.jwt_jwks):
            raise ConfigError("JWT_SECRET or JWT_JWKS: a key is required when APP_ENV=production")
        if self.jwt_jwks:
            _validate_jwks(self.jwt_jwks)
        if self.is_sqlite and self.web_concurrency > 1:
            raise ConfigError(
                "WEB_CONCURRENCY: SQLite serves one process (live messages are fanned out in "
                "process); use PostgreSQL for more workers"
            )
        for origin in self.cors_origins:
            if not _splits(origin) or not urlsplit(origin).scheme or not urlsplit(origin).netloc:
                raise ConfigError(
                    f"CORS_ORIGINS: {origin!r} is not an origin like https://app.example"
                )

    def validate_serving(self) -> None:
        """What serving needs beyond ``validate``: in production, /metrics is protected by a
        token or declared reachable only from a trusted network."""
        if self.is_production and self.metrics_token is None and not self.metrics_unprotected:
            raise ConfigError(
                "METRICS_TOKEN or METRICS_UNPROTECTED=true: with APP_ENV=production set a token "
                "for /metrics, or say it is only reachable from a trusted network"
            )

    @property
    def send_limits(self) -> SendLimits:
        return SendLimits(
            self.rate_limit_messages_per_minute, self.rate_limit_staff_messages_per_minute
        )

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    @property
    def presence_ttl_s(self) -> float:
        """How long a process's presence rows outlive its last heartbeat (it crashed)."""
        return 3 * self.presence_heartbeat_s

    @property
    def is_sqlite(self) -> bool:
        return url_scheme(self.database_url) == "sqlite"

    @property
    def listen_url(self) -> str:
        """Where the realtime listener connects (LISTEN needs a session: no transaction pooler)."""
        return self.listen_database_url or self.database_url

    def _validate_timeouts(self) -> None:
        """A lock wait gives up before the statement does (or it reads as a slow query), and a
        stopping process waits for every request it may still be answering."""
        if self.shutdown_timeout_s < self.request_timeout_s:
            raise ConfigError(
                f"SHUTDOWN_TIMEOUT_SECONDS: must be at least REQUEST_TIMEOUT_SECONDS "
                f"({self.request_timeout_s:g}), got {self.shutdown_timeout_s}"
            )
        statement, lock = self.db_statement_timeout_ms, self.db_lock_timeout_ms
        if statement and (lock == 0 or lock >= statement):
            raise ConfigError(
                f"DB_LOCK_TIMEOUT_MS: must be set and below DB_STATEMENT_TIMEOUT_MS "
                f"({statement}), got {lock}"
            )

    def _validate_head_limits(self) -> None:
        """A request's head holds its request line."""
        if self.max_header_bytes < self.max_request_line_bytes:
            raise ConfigError(
                f"MAX_HEADER_BYTES: must be at least MAX_REQUEST_LINE_BYTES "
                f"({self.max_request_line_bytes}), got {self.max_header_bytes}"
            )

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


def _validate_jwks(location: str) -> None:
    """JWT_JWKS: an https URL (``urlsplit`` reads it) or a file; what is wrong with a URL said
    without quoting it (its userinfo may hold a password)."""
    scheme = url_scheme(location)
    if scheme == "http":
        raise ConfigError("JWT_JWKS: use https; keys fetched over http can be swapped in transit")
    if scheme == "https" and not _splits(location):
        raise ConfigError("JWT_JWKS: the https URL cannot be read (an unbalanced '[' or ']'?)")
    if scheme != "https" and not Path(location).is_file():
        shown = "the URL" if scheme else repr(location)
        raise ConfigError(f"JWT_JWKS: {shown} is neither an https URL nor a file")


def _splits(url: str) -> bool:
    """Whether ``urlsplit`` reads ``url`` (it refuses an unbalanced '[' or ']')."""
    try:
        urlsplit(url)
    except ValueError:
        return False
    return True


def _one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(name) or "false").strip().lower()
    if raw not in BOOLEANS:
        raise ConfigError(f"{name}: expected true or false, got {env.get(name)!r}")
    return BOOLEANS[raw]


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
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


def _float(env: Mapping[str, str], name: str, default: float) -> float:
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
