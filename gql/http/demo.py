"""The demo pages, in development only: a customer's chat widget (/demo/chat) and an admin's
console (/demo/inbox), small preact + htm + graphql-ws pages (gql/http/demo/) that use Helpline
as a real frontend would. Their packages are served from the playground's own npm install
(no CDN); the token comes from the URL fragment, ``#token=<jwt>&api=<origin>``."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

DEMO_DIR = Path(__file__).resolve().parent / "demo"
PAGES = {"/demo/chat": "chat.html", "/demo/inbox": "inbox.html"}


def demo_routes() -> list[BaseRoute]:
    def page(path: str, name: str) -> Route:
        async def serve(request: Request) -> Response:
            return FileResponse(DEMO_DIR / name, media_type="text/html")

        return Route(path, serve)

    routes: list[BaseRoute] = [page(path, name) for path, name in PAGES.items()]
    routes.append(Mount("/demo/static", StaticFiles(directory=DEMO_DIR), name="demo"))
    return routes
