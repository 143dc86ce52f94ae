"""Issue #23 against a real server: no input gets a traceback, a 500 or unbounded memory.

A lone surrogate in ``operationName`` is a coded 400; a malformed WebSocket message closes the
socket with 4400 and a few words; a persisted document and a verified token are counted as
Python holds them; a token over MAX_TOKEN_BYTES is refused before its signature is checked;
a long name from sign-up reaches the profile cut to its cap. No line of the server's log has a
traceback or is an ERROR.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx2 as httpx
import pytest
from websockets.asyncio.client import connect
from websockets.frames import CloseCode

from gql.caching.lru import MAX_ENTRY_SHARE
from gql.ws.websocket import MAX_OPERATION_ID_CHARS
from repo.demo import CUSTOMER
from repo.users import MAX_NAME_FROM_FULL_NAME
from tests.conftest import settings_for
from tests.e2e.conftest import Server, running_server, service_token, user_token
from tests.e2e.wsclient import GUARD_S, PROTOCOL, ws_url

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

PING = "{ __typename }"
PERSISTED_QUERY_CACHE_BYTES = 300_000
TOKEN_CACHE_BYTES = 512 * 1024
MAX_TOKEN_BYTES = 16384  # the default
JSON_VALUES: list[object] = [None, True, 0, -1.5, "", "text", [], ["a", 1], {}, {"a": [1]}]
PAYLOAD_KINDS = ("connection_init", "ping", "pong")  # a payload: an object or null


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module, on SQLite: what these tests send never reaches the data."""
    directory = tmp_path_factory.mktemp("hostile")
    settings = settings_for(f"sqlite:///{directory / 'helpline.db'}")
    with running_server(
        settings,
        directory / "server.log",
        PERSISTED_QUERY_CACHE_BYTES=str(PERSISTED_QUERY_CACHE_BYTES),
        TOKEN_CACHE_BYTES=str(TOKEN_CACHE_BYTES),
    ) as server:
        yield server


@contextmanager
def clean_log(server: Server) -> Iterator[list[dict[str, Any]]]:
    """The server's log lines written while the block runs (read at its end), none of which
    may have a traceback or be an ERROR."""
    start = server.log.stat().st_size
    lines: list[dict[str, Any]] = []
    yield lines
    time.sleep(0.3)  # a failing socket's traceback is written after its client saw the close
    with server.log.open("rb") as log:
        log.seek(start)
        text = log.read().decode()
    assert "Traceback" not in text, text[-3000:]
    lines.extend(json.loads(line) for line in text.splitlines() if line.startswith("{"))
    assert [line for line in lines if line["level"] in ("ERROR", "CRITICAL")] == []


def errors_counted(server: Server, code: str) -> float:
    text = httpx.get(f"{server.base}/metrics", timeout=10).text
    found = re.search(rf'^helpline_graphql_errors_total\{{code="{code}"\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


# Row 5: a lone surrogate in operationName.


def test_a_lone_surrogate_operation_name_is_a_coded_400_on_every_path(served: Server) -> None:
    token = service_token()
    json_body = {"content-type": "application/json"}
    surrogate_name = b'{"query": "%s", "operationName": "\\ud800"}'
    by_get = "?query=%7B__typename%7D&operationName=%ED%A0%80"  # U+D800's bytes: not UTF-8
    requests = [  # POSTs pass the fast front, which reads them, on their way to the view
        ("POST", "", surrogate_name % PING.encode(), json_body | bearer(token)),
        ("POST", "", surrogate_name % PING.encode(), json_body),
        ("POST", "", surrogate_name % b"query A { __typename }", json_body | bearer(token)),
        ("GET", by_get, None, bearer(token)),
        ("GET", by_get, None, {}),
    ]
    counted = errors_counted(served, "BAD_REQUEST")

    with clean_log(served) as lines, httpx.Client(timeout=10) as http:
        request_ids = []
        for number, (method, query_string, content, headers) in enumerate(requests):
            request_id = f"surrogate-{number}"
            response = http.request(
                method,
                served.url + query_string,
                content=content,
                headers=headers | {"x-request-id": request_id},
            )
            assert response.status_code == 400, (number, response.text)
            assert response.headers["content-type"].startswith("application/json")
            assert response.headers["x-request-id"] == request_id
            (error,) = response.json()["errors"]
            assert error["extensions"]["code"] == "BAD_REQUEST", error
            assert "operation" in error["message"]
            request_ids.append(request_id)

    access = [line for line in lines if line["logger"] == "helpline.access"]
    assert [(a["request_id"], a["status"], a["error_codes"]) for a in access] == [
        (request_id, 400, ["BAD_REQUEST"]) for request_id in request_ids
    ]
    assert errors_counted(served, "BAD_REQUEST") == counted + len(requests)


# Row 6: malformed WebSocket messages.


async def outcome(url: str, messages: list[str], *, init: bool = True) -> tuple[int | None, str]:
    """(close code, reason) after the messages are sent; (None, the reply to a ping) when
    the socket is still open and answering."""
    async with connect(ws_url(url), subprotocols=[PROTOCOL], max_size=None) as socket:  # type: ignore[list-item]
        try:
            if init:
                init_message = {"type": "connection_init", "payload": bearer(service_token())}
                await socket.send(json.dumps(init_message))
                assert json.loads(await socket.recv())["type"] == "connection_ack"
            for message in messages:
                await socket.send(message)
            await socket.send(json.dumps({"type": "ping"}))
            while True:
                reply = json.loads(await asyncio.wait_for(socket.recv(), GUARD_S))
                if reply["type"] == "pong":
                    return None, "pong"
        except Exception:  # closed, as it should be for a malformed message
            await socket.wait_closed()
            return socket.close_code, socket.close_reason or ""


def envelopes() -> list[tuple[str, bool, bool]]:
    """(message, whether it goes first instead of connection_init, whether it is malformed):
    every key of every client message with every JSON type."""
    cases: list[tuple[str, bool, bool]] = []
    kinds = [*PAYLOAD_KINDS, "subscribe", "complete"]
    subscribe = {"query": "subscription { inboxUpdated { unreadCount } }"}
    for kind in kinds:
        for value in JSON_VALUES:
            first = kind == "connection_init"
            base: dict[str, Any] = {"type": kind}
            if kind in ("subscribe", "complete"):
                base["id"] = f"{kind}-{len(cases)}"
            if kind == "subscribe":
                base["payload"] = subscribe
            cases.append((json.dumps(base | {"type": value}), first, True))
            if kind in ("subscribe", "complete"):
                bad_id = not (isinstance(value, str) and value)
                cases.append((json.dumps(base | {"id": value}), first, bad_id))
            bad_payload = kind in PAYLOAD_KINDS and not isinstance(value, dict | None)
            cases.append((json.dumps(base | {"payload": value}), first, bad_payload))
    return cases


def test_every_malformed_message_closes_the_socket_with_4400(served: Server) -> None:
    deep = "[" * 30_000 + "]" * 30_000  # far deeper than the decoder goes, within MAX_BODY_BYTES
    long_id = "x" * (MAX_OPERATION_ID_CHARS + 1)
    malformed = [
        ('{"type": "connection_init", "payload": ' + deep + "}", True),
        ('{"type": "connection_init", "payload": {"a": ' + deep + "}}", True),
        (deep, True),
        ('{"type": "ping", "payload": {"n": ' + "7" * 5000 + "}}", False),  # too long to convert
        ('{"type": "\\ud800"}', False),
        ('{"type": "' + "x" * 60_000 + '"}', False),
        ('{"type": "subscribe", "id": {"a": 1}, "payload": {}}', False),
        (json.dumps({"type": "subscribe", "id": long_id, "payload": {"query": PING}}), False),
        (json.dumps({"type": "complete", "id": "y" * 60_000}), False),
        ("[1, 2]", False),
        ('"text"', True),
        ("{not json", False),
    ]
    sound = [
        json.dumps({"type": "subscribe", "id": "\ud800", "payload": {"query": PING}}),
        json.dumps({"type": "complete", "id": "x" * MAX_OPERATION_ID_CHARS}),
        json.dumps({"type": "ping", "payload": None, "extra": deep[:10]}),
    ]

    async def scenario() -> None:
        for message, first in malformed:
            code, reason = await outcome(served.url, [message], init=not first)
            assert code == 4400 and reason, (message[:80], code, reason)
            assert len(reason.encode()) <= 123
        # a message larger than MAX_BODY_BYTES is not read at all: 1009, message too big
        oversized = '{"type": "connection_init", "payload": {"a": "' + "x" * 70_000 + '"}}'
        codes = []
        for _ in range(3):  # the server closes with the payload unread: the kernel may answer
            codes.append((await outcome(served.url, [oversized], init=False))[0])  # with RST
            if codes[-1] != CloseCode.ABNORMAL_CLOSURE:  # before the client reads the close
                break
        assert codes[-1] == 1009, codes
        for message in sound:
            assert await outcome(served.url, [message]) == (None, "pong"), message[:80]
        for message, first, is_malformed in envelopes():
            code, reason = await outcome(served.url, [message], init=not first)
            if is_malformed:
                assert code == 4400 and reason, (message, code, reason)
            else:
                assert code in (None, 4401), (message, code, reason)  # 4401: no token in it

    with clean_log(served):
        asyncio.run(scenario())


def test_a_second_subscribe_with_a_long_id_in_use_closes_with_4409(served: Server) -> None:
    operation_id = "é" * MAX_OPERATION_ID_CHARS  # Strawberry's reason quoting it is too long
    subscribe = {
        "type": "subscribe",
        "id": operation_id,
        "payload": {"query": "subscription { inboxUpdated { unreadCount } }"},
    }

    async def scenario() -> tuple[int | None, str]:
        async with connect(ws_url(served.url), subprotocols=[PROTOCOL]) as socket:  # type: ignore[list-item]
            init = {"type": "connection_init", "payload": bearer(service_token())}
            await socket.send(json.dumps(init))
            await socket.recv()
            await socket.send(json.dumps(subscribe))
            # no wait: a socket's messages are handled in turn, so by the time the second is
            # read the first runs, and its id is in use
            await socket.send(json.dumps(subscribe))
            await socket.wait_closed()
            return socket.close_code, socket.close_reason or ""

    with clean_log(served):
        assert asyncio.run(scenario()) == (4409, "subscriber already exists")


# Row 7: persisted documents counted as Python holds them.


def test_persisted_documents_are_counted_as_python_holds_them(served: Server) -> None:
    # One character beyond U+FFFF: Python holds 4 bytes for each character, UTF-8 about 1.
    # Each is under a sixteenth of the budget (MAX_ENTRY_SHARE), so each may be kept.
    documents = [f"{PING} # {n} {'x' * 3_000} \U0001f600" for n in range(40)]
    held = sys.getsizeof(documents[0])
    assert held > 4 * len(documents[0].encode()) - 100
    assert held * MAX_ENTRY_SHARE < PERSISTED_QUERY_CACHE_BYTES
    fit = PERSISTED_QUERY_CACHE_BYTES // held  # 24; counted in UTF-8 bytes all 40 would fit

    def extensions(document: str) -> dict[str, Any]:
        digest = hashlib.sha256(document.encode()).hexdigest()
        return {"persistedQuery": {"version": 1, "sha256Hash": digest}}

    with clean_log(served), httpx.Client(timeout=10, headers=bearer(service_token())) as http:
        for document in documents:
            body = {"query": document, "extensions": extensions(document)}
            assert http.post(served.url, json=body).json() == {"data": {"__typename": "Query"}}
        remembered = [
            document
            for document in documents
            if "data" in http.post(served.url, json={"extensions": extensions(document)}).json()
        ]

    assert 1 <= len(remembered) <= fit
    assert remembered == documents[-len(remembered) :]  # the least recently used went first


# Row 8: tokens bounded by size, one by one and together.


def test_a_token_over_max_token_bytes_is_refused_before_its_signature_is_checked(
    served: Server,
) -> None:
    def token(name_length: int) -> str:
        return user_token(CUSTOMER.id, email=CUSTOMER.email, full_name="n" * name_length)

    oversize = token(MAX_TOKEN_BYTES)
    head, payload, signature = oversize.split(".")
    forged = f"{head}.{payload}.{signature[::-1]}"
    generous = token(MAX_TOKEN_BYTES // 2)  # a Supabase token with plenty of metadata
    assert len(generous) < MAX_TOKEN_BYTES < len(oversize)
    message = f"token larger than MAX_TOKEN_BYTES ({MAX_TOKEN_BYTES} bytes)"

    async def closes(payload: dict[str, Any]) -> tuple[int | None, str]:
        async with connect(ws_url(served.url), subprotocols=[PROTOCOL]) as socket:  # type: ignore[list-item]
            await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
            with pytest.raises(Exception, match="4401"):
                await asyncio.wait_for(socket.recv(), GUARD_S)
            return socket.close_code, socket.close_reason or ""

    with clean_log(served), httpx.Client(timeout=10) as http:
        assert http.post(served.url, json={"query": PING}, headers=bearer(generous)).json() == {
            "data": {"__typename": "Query"}
        }
        for refused in (oversize, forged):
            response = http.post(served.url, json={"query": PING}, headers=bearer(refused))
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == 'Bearer realm="helpline"'
            assert "x-request-id" in response.headers
            (error,) = response.json()["errors"]
            assert error == {"message": message, "extensions": {"code": "UNAUTHENTICATED"}}
        for authorization, reason in [
            (f"Bearer {oversize}", message),
            (f"Bearer {forged}", message),
            ("Bearer \ud800", "malformed token"),  # a JSON string may hold what a header cannot
            ("Bearer é.é.é", "malformed token"),
        ]:
            closed = asyncio.run(closes({"Authorization": authorization}))
            assert closed == (4401, reason)


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+) kB$", status, re.M)
    assert found is not None
    return int(found.group(1)) * 1024


def test_verified_tokens_hold_at_most_token_cache_bytes(served: Server) -> None:
    # each token ~12.5 KB, its name 9 KB more once verified; enough of them that what the
    # collector leaves for its next pass (gql/http/heap.py) is small beside an unbounded cache
    count, name_length = 1200, 9000
    tokens = [
        user_token(uuid4(), email=f"{n}@example.com", full_name=f"{n}{'n' * name_length}")
        for n in range(count)
    ]
    unbounded = sum(sys.getsizeof(t) + name_length for t in tokens)  # about 26 MB
    assert unbounded > 10 * TOKEN_CACHE_BYTES

    with clean_log(served), httpx.Client(timeout=10) as http:
        http.post(served.url, json={"query": PING}, headers=bearer(tokens[0]))
        before = rss_bytes(served.pid)
        for token in tokens:
            response = http.post(served.url, json={"query": PING}, headers=bearer(token))
            assert response.status_code == 200, response.text
        grown = rss_bytes(served.pid) - before

    assert grown < unbounded / 2, (grown, unbounded)


def test_a_name_from_sign_up_reaches_the_profile_cut_to_its_cap_or_not_at_all(
    server: Server,
) -> None:
    """A long name is cut; one that is not Unicode text (a lone surrogate in the token's JSON)
    is no name, and the email names the profile; an email that is not text is no email."""
    query = "mutation { adminConversation { conversation { customer { name } } } }"

    def first_contact(email: str, full_name: str) -> dict[str, Any]:
        token = user_token(uuid4(), email=email, full_name=full_name)
        response = httpx.post(server.url, json={"query": query}, headers=bearer(token), timeout=30)
        body: dict[str, Any] = response.json()
        return body

    name = "Grace " + "n" * 5000
    with clean_log(server):
        long_name = first_contact("long-name@example.com", name)
        broken_name = first_contact("broken-name@example.com", "Lee \ud800")
        broken_email = first_contact("x\ud800@example.com", "Xavier")

    def customer_name(body: dict[str, Any]) -> str:
        return str(body["data"]["adminConversation"]["conversation"]["customer"]["name"])

    assert customer_name(long_name) == name[:MAX_NAME_FROM_FULL_NAME]
    assert customer_name(broken_name) == "broken-name@example.com"
    assert broken_email["errors"][0]["extensions"]["code"] == "CUSTOMER_NOT_FOUND"
