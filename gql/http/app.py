"""The ASGI application: `uvicorn --factory gql.http.app:create_app`."""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from gql.auth.tokens import Authenticator
from gql.fastpath.plans import FastPaths
from gql.graphql.schema import build_schema, fast_roots
from gql.http import heap
from gql.http.demo import demo_routes
from gql.http.fastfront import FastFront
from gql.http.middleware import BodySizeLimit, ConcurrencyLimit, InFlight
from gql.http.playground import ASSETS_DIR, ASSETS_URL, assets_available
from gql.http.responses import RETRY_AFTER, Finisher, refusal
from gql.http.settings import Settings
from gql.http.view import HelplineGraphQL
from gql.observability.metrics import (
    DATABASE_FIGURES,
    REPLICA_FALLBACKS,
    exposition,
    forget_this_process,
)
from gql.persisted.queries import PersistedQueries
from gql.realtime.clock import ConversationClock
from gql.realtime.hub import Hub
from gql.realtime.listeners import LocalListener, PostgresListener
from gql.realtime.presence import Presence
from gql.ws.quotas import Quotas
from gql.ws.websocket import SubscriptionGate
from repo.config import ConfigError
from repo.database import (
    check_database,
    close_database,
    on_replica_fallback,
    open_database,
    pool_connections_in_use,
)
from repo.sqlite_claim import claim_sqlite_server
from repo.users import is_admin

log = logging.getLogger("helpline")

READY_TIMEOUT_S = 2.0


@asynccontextmanager
async def _lifespan(
    app: Starlette, *, settings: Settings, hub: Hub, presence: Presence
) -> AsyncIterator[None]:
    """Claim SQLite for this process, open the pool, start live messages; undo it all after."""
    try:
        release = claim_sqlite_server(settings.database)
    except ConfigError as exc:  # the first line says what to fix (Starlette adds a traceback)
        log.error("%s", exc)
        raise SystemExit(3) from None
    try:
        open_database(settings.database)
        log.info(
            "serving on %s (%s)",
            "SQLite" if settings.database.is_sqlite else "PostgreSQL",
            settings.app_env,
        )
        listener = (
            LocalListener(hub)
            if settings.database.is_sqlite
            else PostgresListener(hub, settings.database.listen_url)
        )
        hub.start()
        await listener.start()
        presence.start()
        hours = settings.realtime.auto_resolve_after_hours
        clock = ConversationClock(resolve_after=timedelta(hours=hours) if hours else None)
        clock.start()  # after the listener: what it changes is heard
        app.state.listener = listener
        heap.settle()  # the collector's long pauses, out of the way of delivery
        try:
            yield
        finally:
            await clock.stop()
            await presence.stop()
            await listener.stop()
            await hub.stop()
            # Closing a connection another thread uses can crash or block on its query:
            # wait a little for them, then leave any still in use to the process exit.
            await _until_pool_idle()
            close_database(idle_only=pool_connections_in_use() > 0)
            forget_this_process()
    finally:
        release()


async def _until_pool_idle(timeout_s: float = 5.0) -> None:
    """Wait, bounded, until worker threads have returned their pooled connections."""
    deadline = time.monotonic() + timeout_s
    while pool_connections_in_use() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def create_app(settings: Settings | None = None, *, fast_path: bool = True) -> Starlette:
    """Build the app; settings come from the environment unless given (bad ones, or ones a
    server must not run with, exit in words).

    ``fast_path``: answer the hot documents without the generic executor (gql/fastpath/plans.py);
    the tests turn it off to compare both paths.
    """
    try:
        settings = Settings.from_env() if settings is None else settings
        settings.validate_serving()
    except ConfigError as exc:
        raise SystemExit(f"helpline: {exc}") from None

    hub = Hub(queue_size=settings.ws.ws_queue_size, ordered=not settings.database.is_sqlite)
    presence = Presence(
        heartbeat_s=settings.ws.presence_heartbeat_s, ttl_s=settings.ws.presence_ttl_s
    )

    async def live(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        try:
            with anyio.fail_after(READY_TIMEOUT_S):
                await anyio.to_thread.run_sync(check_database, abandon_on_cancel=True)
        except Exception as exc:
            log.warning("not ready: %s", type(exc).__name__)
            return JSONResponse({"status": "unavailable"}, status_code=503, headers=RETRY_AFTER)
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        if settings.observability.metrics_token is not None:
            expected = f"Bearer {settings.observability.metrics_token}".encode()
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return refusal(401, "metrics need 'Authorization: Bearer <METRICS_TOKEN>'")
        totals: dict[str, int] = {}
        for name, read in DATABASE_FIGURES:  # each bounded: a silent database stalls none long
            try:
                with anyio.fail_after(READY_TIMEOUT_S):
                    figures = await anyio.to_thread.run_sync(read, abandon_on_cancel=True)
            except Exception as exc:
                log.warning("%s not read: %s", name, type(exc).__name__)
                continue
            totals |= figures or {}
        body, media_type = exposition(totals)
        return Response(body, media_type=media_type)

    on_replica_fallback(REPLICA_FALLBACKS.inc)
    schema = build_schema(settings.graphql, production=settings.is_production)
    authenticator = Authenticator(settings.auth, admin_lookup=is_admin)
    rules = schema.rules  # the executor's own: one validation per document, however it comes
    fast_paths = (
        FastPaths(
            schema._schema,
            fast_roots(settings.graphql),
            rules=rules,
            max_tokens=settings.graphql.max_tokens,
            extensions=schema.get_extensions(),
            max_bytes=settings.http.plan_cache_bytes,
        )
        if fast_path
        else None
    )
    in_flight = InFlight(limit=settings.http.max_concurrent_requests)
    gate = SubscriptionGate(
        schema._schema,
        rules=rules,
        max_tokens=settings.graphql.max_tokens,
        parsed=schema.parsed_documents,
        validated=schema.validated_documents,
    )
    finish = Finisher(successes=settings.observability.access_log == "all")
    persisted = PersistedQueries(settings.http.persisted_query_cache_bytes)
    cors: dict[str, Any] | None = (
        {
            "allow_origins": list(settings.http.cors_origins),
            "allow_methods": ["GET", "POST"],
            "allow_headers": ["Authorization", "Content-Type", "X-Request-ID"],
            "expose_headers": [
                "X-Request-ID",
                "Retry-After",
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
            ],
            "max_age": 600,
        }
        if settings.http.cors_origins
        else None
    )
    view = HelplineGraphQL(
        schema,
        authenticator=authenticator,
        hub=hub,
        presence=presence,
        max_sockets=settings.ws.ws_max_connections,
        send_timeout_s=settings.ws.ws_send_timeout_s,
        finish=finish,
        request_timeout_s=settings.http.request_timeout_s,
        subscription_gate=gate,
        welcome_message=settings.graphql.welcome_message,
        send_limits=settings.graphql.send_limits,
        persisted=persisted,
        quotas=Quotas(
            pending_per_address=settings.ws.ws_max_pending_per_address,
            sockets_per_caller=settings.ws.ws_max_sockets_per_caller,
            subscriptions_per_caller=settings.ws.ws_max_subscriptions_per_caller,
        ),
        max_subscriptions_per_connection=settings.ws.ws_max_subscriptions,
        connection_init_wait_timeout=timedelta(seconds=settings.ws.ws_init_timeout_s),
        graphql_ide=None if settings.is_production else "graphiql",
    )
    app = Starlette(
        routes=[
            Route("/graphql", view, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", view),
            Route("/live", live),
            Route("/ready", ready),
            Route("/metrics", metrics),
            *(
                [Mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="playground")]
                if not settings.is_production and assets_available()
                else []
            ),
            *(demo_routes() if not settings.is_production else []),
        ],
        middleware=[
            Middleware(ConcurrencyLimit, in_flight=in_flight),
            # Next, so a hot request skips the rest of the stack (gql/http/fastfront.py says why).
            *(
                [
                    Middleware(
                        FastFront,
                        fast_paths=fast_paths,
                        authenticator=authenticator,
                        max_body_bytes=settings.http.max_body_bytes,
                        cors=cors,
                        finish=finish,
                        request_timeout_s=settings.http.request_timeout_s,
                        persisted=persisted,
                    )
                ]
                if fast_paths is not None
                else []
            ),
            Middleware(BodySizeLimit, max_bytes=settings.http.max_body_bytes),
            # Without CORS_ORIGINS no browser origin is allowed, so there is nothing for the
            # middleware to add; it would only wrap every response (a hot-path cost).
            *([Middleware(CORSMiddleware, **cors)] if cors is not None else []),
        ],
        lifespan=functools.partial(_lifespan, settings=settings, hub=hub, presence=presence),
    )
    # for diagnostics and tests
    app.state.hub, app.state.view, app.state.presence = hub, view, presence
    app.state.fast_paths, app.state.in_flight = fast_paths, in_flight
    return app
