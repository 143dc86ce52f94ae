"""The clients people use, from Node against a real server, set up as the README's recipes say
(tests/clients: Apollo Client 4, graphql-ws 6, graphql-http's audit; `make install` runs
`npm ci` there). Each script prints what its client showed; the checks are here."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gql.http.settings import Settings
from gql.ops.tokens import mint
from tests.conftest import TEST_JWT_SECRET
from tests.e2e.conftest import Server, user_token
from tests.e2e.test_subscriptions import open_conversation
from tests.factories import make_admin, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CLIENTS = Path(__file__).resolve().parents[1] / "clients"
NODE = shutil.which("node")


def node(script: str, *args: str, timeout: float = 90) -> Any:
    """Run a client script; what it printed, parsed."""
    missing = [
        what
        for what, ok in [
            ("Node.js", NODE is not None),
            ("the clients' packages (make install)", (CLIENTS / "node_modules").is_dir()),
        ]
        if not ok
    ]
    if missing and os.environ.get("CI", "").lower() not in ("true", "1"):
        pytest.skip(f"the client tests need {' and '.join(missing)}")
    assert not missing, f"CI needs {' and '.join(missing)}"
    done = subprocess.run(
        [str(NODE), script, *args],
        cwd=CLIENTS,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLE_URL = '"https://helpline.example/graphql"'


def readme_blocks(heading: str) -> list[str]:
    """The ```js blocks of the README's section under ``heading``, as printed."""
    text = README.read_text()
    section = text[text.index(f"\n{heading}\n") :]
    section = section[: section.index("\n### ", 1)]
    return re.findall(r"```js\n(.*?)```", section, re.S)


def write_apollo_recipe(url: str) -> None:
    """The README's Apollo recipe, as a module the Node test imports; only its example URL
    becomes the test server's."""
    blocks = readme_blocks("### Apollo Client 4")
    assert len(blocks) == 2 and blocks[0].count(EXAMPLE_URL) == 1
    source = "\n".join(blocks).replace(EXAMPLE_URL, json.dumps(url))
    (CLIENTS / "readme-apollo.generated.mjs").write_text(source)


def write_graphql_ws_recipe(url: str) -> None:
    (block,) = readme_blocks("### graphql-ws 6 (with or without Apollo)")
    example = EXAMPLE_URL.replace("https", "wss")
    assert block.count(example) == 1
    source = block.replace(example, json.dumps(url.replace("http", "ws", 1)))
    (CLIENTS / "readme-graphql-ws.generated.mjs").write_text(source)


def test_apollo_client_pages_caches_and_hears_messages_as_the_recipe_says(
    postgres_server: Server,
) -> None:
    admin = make_admin("Ada Admin")
    write_apollo_recipe(postgres_server.url)
    config = {
        "url": postgres_server.url,
        "customer": user_token(make_user()),
        "admin": user_token(admin),
    }

    seen = node("apollo.mjs", json.dumps(config))

    assert seen["adminName"] == "Ada Admin"
    # APQ: the hash alone first, the document once the server asks for it, the hash alone after
    assert [(r["document"], r["hash"]) for r in seen["firstRequests"]] == [
        (False, True),
        (True, True),
    ]
    assert [(r["document"], r["hash"]) for r in seen["repeatRequests"]] == [(False, True)]
    # relayStylePagination: two pages of two, newest first, one cached list
    assert seen["pagedContents"] == ["message 3", "message 2", "message 1", "Hello from e2e"]
    assert seen["liveFirst"] == seen["heard"]  # messageAdded added to the cached page
    assert seen["unreadBefore"] >= 3  # the customer's three messages, and the live probe
    assert seen["unreadAfterFromCache"] == 0  # markRead's InboxItem updated the cached inbox
    assert seen["customerInbox"] == [["FORBIDDEN", "inbox is for admins and operators"]]


def test_graphql_ws_reconnects_with_a_fresh_token_and_gives_up_on_a_forbidden_role_or_a_crowd(
    postgres_server: Server,
) -> None:
    make_admin()
    customer = make_user()
    token = user_token(customer)
    config = {
        "url": postgres_server.url,
        "conversation": open_conversation(postgres_server.url, token),
        "sender": token,
        # accepted thanks to the 30 s leeway, closed (4403) two seconds later
        "tokens": [user_token(customer, expires_in=-28), token],
        "forbidden": mint(TEST_JWT_SECRET, role="postgres"),
        # another customer, who opens their bound of sockets, then one more
        "crowded": {
            "token": user_token(make_user()),
            "bound": Settings().ws.ws_max_sockets_per_caller,
        },
    }

    write_graphql_ws_recipe(postgres_server.url)
    seen = node("websocket.mjs", json.dumps(config))

    assert seen["recipeHeard"] is True  # the README's block, as printed, hears messages

    assert seen["closeCodes"][0] == 4403  # token expired: graphql-ws retried by itself
    assert seen["tokensAsked"] >= 2  # connectionParams gave the fresh token on reconnecting
    assert seen["heard"][0]["reconnected"] is False
    assert seen["heard"][-1]["reconnected"] is True  # the same subscription, still live
    refused = seen["refused"]
    assert refused["error"] == {"code": 4401, "reason": "role may not use this API"}
    assert refused["connecting"] == 1  # fatal: no retries, the app heard it at once
    crowded = seen["crowded"]  # one socket more than a customer may hold
    assert crowded["error"] == {"code": 4429, "reason": "too many sockets for this caller"}
    assert crowded["connecting"] == 1  # fatal as well: it does not retry into the same wall


def test_graphql_http_audit_passes_every_audit(postgres_server: Server) -> None:
    results = node("audit.mjs", postgres_server.url)

    assert len(results) == 61
    failed = [r for r in results if r["status"] != "ok"]
    assert failed == []
