"""The GraphiQL playground in a real headless Chromium: offline, a query runs, results show."""

from __future__ import annotations

import json
import time
from urllib.parse import quote, urlsplit

import pytest
from playwright.sync_api import Browser

from repo.demo import CUSTOMER
from tests.e2e.conftest import Server, user_token

# The playground is what `make run` serves, on its embedded default: SQLite. (The browser
# drives the same API on either backend; the API's own tests cover both.)
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(120),
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]


def test_the_playground_runs_a_query_with_a_pasted_token_and_no_outside_request(
    server: Server, browser: Browser
) -> None:
    page = browser.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    query = "{ adminConversation { admin { name } messages { edges { node { content } } } } }"
    headers = json.dumps({"Authorization": f"Bearer {user_token(CUSTOMER.id)}"})
    opened = page.request.post(
        server.url,
        data={"query": "mutation { adminConversation { created } }"},
        headers={"authorization": f"Bearer {user_token(CUSTOMER.id)}"},
    )
    assert opened.ok

    page.goto(f"{server.url}?q={quote(query)}")
    page.get_by_text("Headers", exact=True).click()  # paste the token as a user would
    page.locator(".graphiql-editor-tool .graphiql-editor:visible").first.click()
    page.keyboard.type(headers)
    page.locator(".graphiql-execute-button").click()
    result = page.locator(".graphiql-response")
    result.get_by_text("Ada Admin").first.wait_for(timeout=15_000)

    assert "Hello from e2e" in result.inner_text()
    hosts = {urlsplit(url).netloc for url in requested if not url.startswith("data:")}
    assert hosts == {urlsplit(server.url).netloc}, requested
    page.close()


def test_the_first_query_in_the_playground_is_helplines_own(
    server: Server, browser: Browser
) -> None:
    page = browser.new_page()
    page.goto(server.url)
    editor = page.locator(".graphiql-query-editor")
    editor.get_by_text("mutation OpenChat").wait_for(timeout=15_000)
    assert "Authorization" in editor.inner_text()
    page.close()


def test_a_subscription_in_the_playground_shows_new_messages(
    server: Server, browser: Browser
) -> None:
    token = user_token(CUSTOMER.id)
    opened = browser.new_page().request.post(
        server.url,
        data={"query": "mutation { adminConversation { conversation { id } } }"},
        headers={"authorization": f"Bearer {token}"},
    )
    conversation = opened.json()["data"]["adminConversation"]["conversation"]["id"]
    page = browser.new_page()
    query = f'subscription {{ messageAdded(conversationId: "{conversation}") {{ content }} }}'
    page.goto(f"{server.url}?q={quote(query)}")
    page.get_by_text("Headers", exact=True).click()
    page.locator(".graphiql-editor-tool .graphiql-editor:visible").first.click()
    page.keyboard.type(json.dumps({"Authorization": f"Bearer {token}"}))
    page.locator(".graphiql-execute-button").click()
    send = (
        f'mutation {{ sendMessage(conversationId: "{conversation}", content: "live from the '
        'playground test") { id } }'
    )
    result = page.locator(".graphiql-response")
    deadline = time.monotonic() + 20
    while not result.get_by_text("live from the playground test").count():
        assert time.monotonic() < deadline, result.inner_text()
        page.request.post(
            server.url, data={"query": send}, headers={"authorization": f"Bearer {token}"}
        )
        page.wait_for_timeout(500)
    page.close()


def test_a_link_with_a_query_opens_the_playground_filled_in(
    server: Server, browser: Browser
) -> None:
    query = "query Mine($first: Int) { inbox(first: $first) { edges { cursor } } }"
    link = (
        f"{server.url}?query={quote(query)}&variables={quote(json.dumps({'first': 3}))}"
        "&operationName=Mine"
    )
    page = browser.new_page()
    page.goto(link)  # as a browser opens a link: HTML before anything else

    page.locator(".graphiql-query-editor").get_by_text("query Mine").wait_for(timeout=15_000)
    assert "inbox(first: $first)" in page.locator(".graphiql-query-editor").inner_text()
    page.get_by_text("Variables", exact=True).click()
    variables = page.locator(".graphiql-editor-tool .graphiql-editor:visible").first
    assert '"first": 3' in variables.inner_text()
    page.close()
