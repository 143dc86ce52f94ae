"""The server's settings: the HTTP layer's own, and every layer's section gathered in one
``Settings``, read from one environment once at start-up.

Each layer defines and validates its own section (the repository's in repo/config.py, the
GraphQL layer's, the WebSocket transport's, authentication's, observability's); what spans
layers (production needs a key, SQLite serves one process) is checked here. Tests and benches
build settings with ``Settings.of(database_url=..., ws_max_connections=...)``: each field by
its variable's name, whichever section holds it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from gql.auth.settings import AuthSettings
from gql.graphql.settings import GraphQLSettings
from gql.observability.settings import ObservabilitySettings
from gql.realtime.settings import RealtimeSettings
from gql.ws.settings import WebSocketSettings
from repo.config import ConfigError, DatabaseSettings, check_one_of, read_section, variable
from repo.urls import splits

APP_ENVS = ("development", "production")


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The HTTP server's: its limits on a request, its deadlines, its processes, CORS, and the
    request pipeline's caches (persisted queries, compiled plans)."""

    max_concurrent_requests: int = variable("MAX_CONCURRENT_REQUESTS", 200, minimum=1)
    shutdown_timeout_s: int = variable("SHUTDOWN_TIMEOUT_SECONDS", 25, minimum=1)
    request_timeout_s: float = variable("REQUEST_TIMEOUT_SECONDS", 20.0)
    cors_origins: tuple[str, ...] = variable("CORS_ORIGINS", ())
    max_body_bytes: int = variable("MAX_BODY_BYTES", 64 * 1024, minimum=1024)
    max_request_line_bytes: int = variable("MAX_REQUEST_LINE_BYTES", 8192, minimum=256)
    max_header_bytes: int = variable("MAX_HEADER_BYTES", 32 * 1024, minimum=4096)
    max_headers: int = variable("MAX_HEADERS", 100, minimum=16)
    header_timeout_s: float = variable("HEADER_TIMEOUT_SECONDS", 10.0)
    body_timeout_s: float = variable("BODY_TIMEOUT_SECONDS", 30.0)
    max_connections: int = variable("MAX_CONNECTIONS", 10_000, minimum=16)
    web_concurrency: int = variable("WEB_CONCURRENCY", 1, minimum=1)
    persisted_query_cache_bytes: int = variable(
        "PERSISTED_QUERY_CACHE_BYTES", 8 * 1024 * 1024, minimum=0
    )
    plan_cache_bytes: int = variable("PLAN_CACHE_BYTES", 8 * 1024 * 1024, minimum=0)

    def validate(self) -> None:
        """A stopping process waits for every request it may still be answering; a request's
        head holds its request line; CORS origins are origins."""
        if self.shutdown_timeout_s < self.request_timeout_s:
            raise ConfigError(
                f"SHUTDOWN_TIMEOUT_SECONDS: must be at least REQUEST_TIMEOUT_SECONDS "
                f"({self.request_timeout_s:g}), got {self.shutdown_timeout_s}"
            )
        if self.max_header_bytes < self.max_request_line_bytes:
            raise ConfigError(
                f"MAX_HEADER_BYTES: must be at least MAX_REQUEST_LINE_BYTES "
                f"({self.max_request_line_bytes}), got {self.max_header_bytes}"
            )
        for origin in self.cors_origins:
            if not splits(origin) or not urlsplit(origin).scheme or not urlsplit(origin).netloc:
                raise ConfigError(
                    f"CORS_ORIGINS: {origin!r} is not an origin like https://app.example"
                )


@dataclass(frozen=True, slots=True)
class Settings:
    """Every layer's settings, and the one that spans them all: ``app_env``."""

    app_env: str = "development"
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    graphql: GraphQLSettings = field(default_factory=GraphQLSettings)
    ws: WebSocketSettings = field(default_factory=WebSocketSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
    realtime: RealtimeSettings = field(default_factory=RealtimeSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every section from the environment, raising ConfigError on a bad value."""
        env = os.environ if environ is None else environ
        settings = cls(
            app_env=env.get("APP_ENV") or cls().app_env,
            **{name: read_section(kind, env) for name, kind in _SECTIONS.items()},
        )
        settings.validate()
        return settings

    @classmethod
    def of(cls, **fields: Any) -> Settings:
        """Defaults but for ``fields``, each named as its variable is (``database_url``)."""
        return cls().replaced(**fields)

    def replaced(self, **fields: Any) -> Settings:
        """A copy with ``fields`` changed, each named as its variable is, in whichever
        section holds it."""
        changes: dict[str, dict[str, Any]] = {}
        top: dict[str, Any] = {}
        for name, value in fields.items():
            if name == "app_env":
                top[name] = value
            elif (section := _SECTION_OF.get(name)) is not None:
                changes.setdefault(section, {})[name] = value
            else:
                raise TypeError(f"no setting named {name!r}")
        for section, values in changes.items():
            top[section] = dataclasses.replace(getattr(self, section), **values)
        return dataclasses.replace(self, **top)

    def validate(self) -> None:
        """Raise ConfigError naming the first setting that is unusable."""
        self.database.validate()
        self.http.validate()
        self.graphql.validate()
        self.observability.validate()
        check_one_of("APP_ENV", self.app_env, APP_ENVS)
        self.auth.validate()
        if self.is_production and not self.auth.has_key:
            raise ConfigError("JWT_SECRET or JWT_JWKS: a key is required when APP_ENV=production")
        if self.database.is_sqlite and self.http.web_concurrency > 1:
            raise ConfigError(
                "WEB_CONCURRENCY: SQLite serves one process (live messages are fanned out in "
                "process); use PostgreSQL for more workers"
            )

    def validate_serving(self) -> None:
        """What serving needs beyond ``validate``: in production, /metrics is protected by a
        token or declared reachable only from a trusted network."""
        metrics = self.observability
        if self.is_production and metrics.metrics_token is None and not metrics.metrics_unprotected:
            raise ConfigError(
                "METRICS_TOKEN or METRICS_UNPROTECTED=true: with APP_ENV=production set a token "
                "for /metrics, or say it is only reachable from a trusted network"
            )

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"


_SECTIONS: dict[str, type[Any]] = {
    "database": DatabaseSettings,
    "http": HttpSettings,
    "graphql": GraphQLSettings,
    "ws": WebSocketSettings,
    "auth": AuthSettings,
    "observability": ObservabilitySettings,
    "realtime": RealtimeSettings,
}
_SECTION_OF = {f.name: name for name, kind in _SECTIONS.items() for f in dataclasses.fields(kind)}
