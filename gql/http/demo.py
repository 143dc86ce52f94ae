"""The demo pages, in development only: a customer's chat widget (/demo/chat) and an admin's
console (/demo/inbox), small preact + htm + graphql-ws pages (gql/http/demo/) that use Helpline
as a real frontend would. Their packages are served from the playground's own npm install
(no CDN); the token comes from the URL fragment, ``#token=<jwt>&api=<origin>``."""

from __future__ import annotations

from pathlib import Path
from string import Template

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

DEMO_DIR = Path(__file__).resolve().parent / "demo"
# path: (title, module); both pages are page.html around their own module
PAGES = {
    "/demo/chat": ("Helpline chat", "chat.js"),
    "/demo/inbox": ("Helpline console", "inbox.js"),
}


def demo_routes() -> list[BaseRoute]:
    template = Template((DEMO_DIR / "page.html").read_text())

    def page(path: str, title: str, module: str) -> Route:
        html = template.substitute(title=title, script=module)

        async def serve(request: Request) -> Response:
            return HTMLResponse(html)

        return Route(path, serve)

    routes: list[BaseRoute] = [page(path, *page_of) for path, page_of in PAGES.items()]
    routes.append(Mount("/demo/static", StaticFiles(directory=DEMO_DIR), name="demo"))
    return routes
