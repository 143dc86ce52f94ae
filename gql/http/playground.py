"""The GraphiQL playground, served with assets Helpline ships itself (no CDN, works offline).

`make install` fetches the exact files Strawberry's page pins (npm, playground/package.json);
their SRI hashes match, so the page is Strawberry's own with its CDN prefix rewritten.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

log = logging.getLogger("helpline")

ASSETS_DIR = Path(__file__).resolve().parents[2] / "playground" / "node_modules"
ASSETS_URL = "/graphql-assets"
REQUIRED_ASSETS = (
    "react/umd/react.production.min.js",
    "react-dom/umd/react-dom.production.min.js",
    "js-cookie/dist/js.cookie.min.js",
    "graphiql/graphiql.min.js",
    "graphiql/graphiql.min.css",
    "@graphiql/plugin-explorer/dist/index.umd.js",
    "@graphiql/plugin-explorer/dist/style.css",
)
_CDN = re.compile(r"https://unpkg\.com/((?:@[^/@\"]+/)?[^/@\"]+)@[^/\"]+/")
_EXAMPLE_QUERY = re.compile(r"const EXAMPLE_QUERY = `.*?`;", re.S)

# Lands inside a JavaScript template literal: no backticks, no "${".
WELCOME = """# Helpline playground
#
# 1. Open Headers (below) and paste a token
#    that "make run" printed:
#    {"Authorization": "Bearer <CUSTOMER_TOKEN>"}
# 2. Press play (Ctrl-Enter): the customer's
#    chat opens, with the admin's welcome.
#
mutation OpenChat {
  adminConversation {
    created
    profileCreated
    conversation {
      admin { name }
      messages(first: 5) { edges { node { content sender { name } createdAt } } }
    }
  }
}
"""


def assets_available() -> bool:
    return all((ASSETS_DIR / asset).is_file() for asset in REQUIRED_ASSETS)


# Subscriptions go over WebSocket, where headers cannot be set: the page sends the headers
# editor's JSON (with its Authorization) as the connection_init payload instead.
_WS_PARAMS = """subscriptionUrl,
        wsConnectionParams: function () {
          try {
            return JSON.parse(window.helplineHeaders || parameters.headers || "{}");
          } catch (error) {
            return {};
          }
        },"""


# A link such as /graphql?query=...&variables=...&operationName=... (GraphiQL's own URL
# parameters) opens the page with them filled in; Strawberry's page reads only its own ``q``,
# which it writes back as the query is edited, so ``q`` still wins once there is one.
_URL_PARAMETERS = (
    ("parameters.q || EXAMPLE_QUERY", "parameters.q || parameters.query || EXAMPLE_QUERY"),
    ("headers: headers,", "headers: headers,\n          operationName: parameters.operationName,"),
)


def localize(page: str) -> str:
    """Strawberry's GraphiQL page with local assets, Helpline's first query, socket auth and
    GraphiQL's URL parameters."""
    page = _EXAMPLE_QUERY.sub(lambda _: f"const EXAMPLE_QUERY = `{WELCOME}`;", page, count=1)
    page = page.replace("subscriptionUrl,", _WS_PARAMS, 1)
    page = page.replace(
        "setHeaders(newHeaders);",
        "setHeaders(newHeaders);\n          window.helplineHeaders = newHeaders;",
        1,
    )
    for strawberrys, ours in _URL_PARAMETERS:
        if strawberrys not in page:
            log.warning("playground: Strawberry's page changed; URL parameters not wired")
        page = page.replace(strawberrys, ours, 1)
    if not assets_available():
        log.warning("playground assets missing in %s: run `make install`", ASSETS_DIR)
        return page
    return _CDN.sub(lambda m: f"{ASSETS_URL}/{m.group(1)}/", page)
