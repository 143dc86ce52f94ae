"""The demo pages in Debian's Chromium, as a customer and an admin use them: the chat widget
(/demo/chat) and the admin's console (/demo/inbox), against a real `helpline serve`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from gql.http.settings import Settings
from repo.database import database
from repo.ids import ProfileId
from repo.messages import send_message
from repo.models import Conversation, Message
from tests.e2e.conftest import Server, free_port, running_server, user_token
from tests.factories import first_contact, make_admin, make_user
from tests.proxy import TcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
SHOWN_MS = 15_000  # how long a page may take to show what it should
ON_SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def contexts(browser: Browser) -> Iterator[tuple[BrowserContext, BrowserContext]]:
    """A customer's and an admin's browser, each with its own storage."""
    customer, admin = browser.new_context(), browser.new_context()
    yield customer, admin
    customer.close()
    admin.close()


def requested_hosts(page: Page) -> set[str]:
    hosts: set[str] = set()
    page.on("request", lambda request: hosts.add(urlsplit(request.url).hostname or "data:"))
    return hosts


def open_widget(context: BrowserContext, base: str, token: str, api: str | None = None) -> Page:
    page = context.new_page()
    fragment = f"#token={token}" + (f"&api={api}" if api else "")
    page.goto(f"{base}/demo/chat{fragment}")
    expect(page.get_by_test_id("admin-name")).not_to_be_empty(timeout=SHOWN_MS)
    return page


def send(page: Page, text: str, *, input_id: str = "message-input", button: str = "send-button"):  # type: ignore[no-untyped-def]
    page.get_by_test_id(input_id).fill(text)
    page.get_by_test_id(button).click()


def message(page: Page, text: str):  # type: ignore[no-untyped-def]
    return page.get_by_test_id("message").filter(has_text=text)


def conversation_of(customer: UUID) -> Conversation:
    with database.connection_context():
        return Conversation.get(Conversation.customer == customer)


def test_a_customer_and_an_admin_chat_both_ways_live(
    server: Server, contexts: tuple[BrowserContext, BrowserContext]
) -> None:
    make_admin("Bea Backup")
    customer = make_user(full_name="Wendy Widget")
    widget = open_widget(contexts[0], server.base, user_token(customer))
    hosts = requested_hosts(widget)
    chat = conversation_of(customer)
    admin = UUID(str(chat.admin_id))
    console = contexts[1].new_page()
    hosts |= requested_hosts(console)
    console.goto(f"{server.base}/demo/inbox#token={user_token(admin)}")
    row = console.locator(f'[data-testid="inbox-item"][data-conversation-id="{chat.id}"]')
    expect(row.get_by_test_id("unread-count")).to_have_text("0", timeout=SHOWN_MS)

    send(widget, "Hello from the widget")

    expect(message(widget, "Hello from the widget")).to_have_count(1, timeout=SHOWN_MS)
    expect(row.get_by_test_id("unread-count")).to_have_text("1", timeout=SHOWN_MS)  # live
    row.click()
    expect(message(console, "Hello from the widget")).to_be_visible(timeout=SHOWN_MS)
    expect(row.get_by_test_id("unread-count")).to_have_text("0", timeout=SHOWN_MS)  # read
    send(console, "Hi Wendy, how can I help?", input_id="reply-input", button="reply-send")
    expect(message(widget, "Hi Wendy, how can I help?")).to_be_visible(timeout=SHOWN_MS)
    send(widget, "My order is late")
    expect(message(console, "My order is late")).to_be_visible(timeout=SHOWN_MS)
    expect(row.get_by_test_id("unread-count")).to_have_text("0", timeout=SHOWN_MS)  # still open

    contents = widget.get_by_test_id("message").all_inner_texts()
    assert [c.split("\n")[0] for c in contents][-3:] == [
        "Hello from the widget",
        "Hi Wendy, how can I help?",
        "My order is late",
    ]  # oldest first
    console.get_by_test_id("assign-select").select_option(label="Bea Backup")
    console.get_by_test_id("assign-button").click()
    expect(row.get_by_test_id("assigned-to")).to_have_text("Bea Backup", timeout=SHOWN_MS)
    assert hosts <= {"127.0.0.1"}, hosts  # nothing left the machine
    if screenshots := os.environ.get("HELPLINE_SCREENSHOTS"):  # the README's pictures
        widget.screenshot(path=Path(screenshots) / "demo-chat.png")
        console.screenshot(path=Path(screenshots) / "demo-inbox.png")


def test_the_widget_works_from_another_origin(
    postgres: Settings, tmp_path: Path, contexts: tuple[BrowserContext, BrowserContext]
) -> None:
    port = free_port()
    widget_origin = f"http://localhost:{port}"  # another origin, the same machine
    with running_server(postgres, tmp_path / "server.log", port=port, CORS_ORIGINS=widget_origin):
        customer = make_user()  # the demo data's admin answers
        api = f"http://127.0.0.1:{port}"
        page = contexts[0].new_page()
        allowed: list[str | None] = []
        page.on(
            "response",
            lambda r: (
                allowed.append(r.headers.get("access-control-allow-origin"))
                if r.url.startswith(api)
                else None
            ),
        )
        page.goto(f"{widget_origin}/demo/chat#token={user_token(customer)}&api={api}")
        expect(page.get_by_test_id("admin-name")).to_have_text("Ada Admin", timeout=SHOWN_MS)

        send(page, "across origins")

        expect(message(page, "across origins")).to_have_attribute(
            "data-state", "stored", timeout=SHOWN_MS
        )
        assert allowed and set(allowed) == {widget_origin}  # every answer, CORS-approved


@ON_SQLITE  # what the page does with it, whichever backend stored it
def test_markup_in_a_message_shows_as_text(
    server: Server, contexts: tuple[BrowserContext, BrowserContext]
) -> None:
    make_admin()
    page = open_widget(contexts[0], server.base, user_token(make_user()))
    markup = '<b>bold</b><img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'

    send(page, markup)

    shown = message(page, "<b>bold</b>")
    expect(shown).to_be_visible(timeout=SHOWN_MS)
    assert markup in shown.inner_text()
    assert shown.locator("b, img, script").count() == 0
    assert page.evaluate("window.pwned") is None


@ON_SQLITE
def test_markup_in_a_message_shows_as_text_in_the_admins_console(
    server: Server, contexts: tuple[BrowserContext, BrowserContext]
) -> None:
    """The console shows a customer's message twice: as its row's preview and in the
    conversation; neither may render it."""
    make_admin()
    customer = make_user()
    chat = first_contact(customer).conversation
    markup = '<b>bold</b><img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
    send_message(chat.id, markup, sender_id=ProfileId(customer))
    console = contexts[1].new_page()
    console.goto(f"{server.base}/demo/inbox#token={user_token(chat.admin.id)}")
    row = console.locator(f'[data-testid="inbox-item"][data-conversation-id="{chat.id}"]')

    expect(row).to_contain_text("<b>bold</b>", timeout=SHOWN_MS)  # the preview, as text
    row.click()
    shown = message(console, "<b>bold</b>")
    expect(shown).to_be_visible(timeout=SHOWN_MS)

    assert markup in shown.inner_text() and markup in row.inner_text()
    assert console.locator("b, img, script:not([src]):not([type])").count() == 0, console.content()
    assert console.evaluate("window.pwned") is None


def test_a_send_that_fails_while_the_database_is_cut_can_be_retried_and_is_stored_once(
    postgres: Settings, tmp_path: Path, contexts: tuple[BrowserContext, BrowserContext]
) -> None:
    make_admin()
    customer = make_user()
    target = urlsplit(postgres.database.database_url)
    with TcpProxy(target.port or 5432) as proxy:
        netloc = f"{target.username}@127.0.0.1:{proxy.port}"
        proxied = postgres.replaced(database_url=urlunsplit(target._replace(netloc=netloc)))
        with running_server(
            proxied,
            tmp_path / "server.log",
            LISTEN_DATABASE_URL=postgres.database.database_url,  # the live path stays up
            REQUEST_TIMEOUT_SECONDS="2",
            DB_POOL_TIMEOUT="2",
        ) as server:
            page = open_widget(contexts[0], server.base, user_token(customer))

            proxy.cut()  # the database's connections reset, new ones refused
            send(page, "sent during the outage")
            failed = message(page, "sent during the outage")
            expect(failed.get_by_test_id("send-error")).to_be_visible(timeout=SHOWN_MS)
            key = failed.get_attribute("data-client-message-id")
            proxy.restore()
            failed.get_by_test_id("retry-button").click()

            expect(failed).to_have_attribute("data-state", "stored", timeout=SHOWN_MS)
            expect(message(page, "sent during the outage")).to_have_count(1)
    with database.connection_context():
        stored = Message.select().where(Message.content == "sent during the outage")
        assert [m.client_message_id for m in stored] == [key]  # once, under the first id


@ON_SQLITE  # what the page does with it, whichever backend stored it
def test_older_messages_load_on_demand_oldest_first(
    server: Server, contexts: tuple[BrowserContext, BrowserContext]
) -> None:
    make_admin()
    customer = make_user()
    chat = first_contact(customer).conversation
    for n in range(1, 26):
        send_message(chat.id, f"note {n:02}", sender_id=ProfileId(customer))
    page = open_widget(contexts[0], server.base, user_token(customer))
    expect(page.get_by_test_id("message")).to_have_count(20, timeout=SHOWN_MS)  # a page

    page.get_by_test_id("older-button").click()

    expect(page.get_by_test_id("message")).to_have_count(26, timeout=SHOWN_MS)
    contents = [t.split("\n")[0] for t in page.get_by_test_id("message").all_inner_texts()]
    assert contents[1:] == [f"note {n:02}" for n in range(1, 26)]  # after the welcome
    assert page.get_by_test_id("older-button").count() == 0  # nothing older left


def test_an_admin_resolves_the_widget_shows_it_and_the_customer_s_message_reopens_it(
    server: Server, contexts: tuple[BrowserContext, BrowserContext]
) -> None:
    customer = make_user(full_name="Rita Resolved")
    widget = open_widget(contexts[0], server.base, user_token(customer))
    chat = conversation_of(customer)
    console = contexts[1].new_page()
    console.goto(f"{server.base}/demo/inbox#token={user_token(UUID(str(chat.admin_id)))}")
    row = console.locator(f'[data-testid="inbox-item"][data-conversation-id="{chat.id}"]')
    status = widget.get_by_test_id("conversation-status")
    expect(status).to_have_text("OPEN", timeout=SHOWN_MS)
    expect(row.get_by_test_id("unread-count")).to_have_text("0", timeout=SHOWN_MS)  # listed
    send(widget, "Where is my parcel?")
    expect(row.get_by_test_id("waiting-since")).to_be_visible(timeout=SHOWN_MS)  # she waits
    row.click()
    send(console, "On its way!", input_id="reply-input", button="reply-send")
    expect(row.get_by_test_id("waiting-since")).to_have_count(0, timeout=SHOWN_MS)  # answered

    console.get_by_test_id("resolve-button").click()

    expect(status).to_have_text("RESOLVED", timeout=SHOWN_MS)  # live, in the widget
    expect(widget.get_by_test_id("resolved-note")).to_be_visible()
    expect(row).to_have_count(0, timeout=SHOWN_MS)  # out of the Open tab
    console.locator('[data-testid="status-filter"][data-status="RESOLVED"]').click()
    expect(row).to_have_count(1, timeout=SHOWN_MS)
    console.locator('[data-testid="status-filter"][data-status="OPEN"]').click()

    send(widget, "It never came")

    expect(status).to_have_text("OPEN", timeout=SHOWN_MS)
    expect(row).to_have_count(1, timeout=SHOWN_MS)  # open again, live, in the Open tab
    expect(message(console, "It never came")).to_be_visible(timeout=SHOWN_MS)
    expect(console.get_by_test_id("conversation-status")).to_have_text("OPEN", timeout=SHOWN_MS)
    with database.connection_context():
        assert Conversation.select().where(Conversation.customer == customer).count() == 1
