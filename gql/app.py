"""The ASGI application: `uvicorn --factory gql.app:create_app`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import Route

from gql.schema import schema
from gql.view import HelplineGraphQL
from repo.config import ConfigError, Settings
from repo.db import close_database, open_database

log = logging.getLogger("helpline")


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the app; settings come from the environment unless given (bad ones exit in words)."""
    if settings is None:
        try:
            settings = Settings.from_env()
        except ConfigError as exc:
            raise SystemExit(f"helpline: {exc}") from None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        open_database(settings)
        log.info("serving on %s", "SQLite" if settings.is_sqlite else "PostgreSQL")
        try:
            yield
        finally:
            close_database()

    view = HelplineGraphQL(schema, graphql_ide="graphiql")
    return Starlette(
        routes=[Route("/graphql", view, methods=["GET", "POST"])],
        lifespan=lifespan,
    )
