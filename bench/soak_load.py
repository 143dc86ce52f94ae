"""The soak's load: locust (headless) drives a mix of Helpline's paths; every answer is classified.

Started by ``python -m bench.soak`` (``make bench-soak``), which seeds the data, mints the
tokens and reads what this writes; not meant to run on its own. The mix, by task weight:

- 50% hot: the customer's own ``adminConversation`` mutation (an existing conversation);
- 20% first contact: ``adminConversation`` for a customer with a ``users`` row and no profile,
  each new customer once; one whose first contact failed is tried again later, as the chat
  widget would;
- 20% ``sendMessage`` into the customer's own conversation; with a ``clientMessageId`` when the
  schema has one (SOAK_CLIENT_MESSAGE_ID=1), and then a send that failed is sent again later
  with the same key, as a client would retry it (without one, a retry could store it twice);
- 10% the 20 newest messages of the customer's conversation.

Every request gets an ``X-Request-ID`` (``soak-<n>``) so a bad answer can be found in the
server's log. Environment (set by bench.soak): SOAK_DIR holds ``hot.tsv`` (token, customer,
conversation) and ``cold.tsv`` (token, customer) and receives ``requests.csv`` (one row per
request: wall-clock start and end, kind, HTTP status, code, milliseconds, the customer or
conversation it was about, the id a success returned, the Retry-After header) and
``findings.jsonl`` (every answer that is neither a success nor an HTTP 503 SERVICE_UNAVAILABLE
with a Retry-After, in full);
SOAK_RATE_PER_USER is each simulated user's requests per second.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import random
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from locust import FastHttpUser, constant_throughput, events, task

OUT = Path(os.environ.get("SOAK_DIR", "."))
UNAVAILABLE = "SERVICE_UNAVAILABLE"
OK = ""  # the code column of a success

HOT = "mutation ($c: UUID!) { adminConversation(customerId: $c) { conversation { id lastMessageAt admin { name } } } }"  # noqa: E501
FIRST = "mutation { adminConversation { created profileCreated conversation { id } } }"
LIST = "query ($id: UUID!) { conversation(id: $id) { messages(first: 20) { edges { node { id content createdAt sender { id name avatarUrl } } } } } }"  # noqa: E501
SEND = "mutation ($id: UUID!, $t: String!) { sendMessage(conversationId: $id, content: $t) { id createdAt } }"  # noqa: E501
SEND_KEYED = "mutation ($id: UUID!, $t: String!, $k: String!) { sendMessage(conversationId: $id, content: $t, clientMessageId: $k) { id createdAt } }"  # noqa: E501


def _rows(name: str) -> list[list[str]]:
    path = OUT / name
    return [line.split("\t") for line in path.read_text().splitlines()] if path.exists() else []


HOT_ROWS = _rows("hot.tsv")  # token, customer, conversation
COLD_NEW = deque(_rows("cold.tsv"))  # token, customer: never contacted yet
COLD_RETRY: deque[list[str]] = deque()  # first contacts that failed: tried again first
SEND_RETRY: deque[tuple[str, dict[str, Any]]] = deque()  # keyed sends that failed: sent again
KEYED = os.environ.get("SOAK_CLIENT_MESSAGE_ID") == "1"
_request_ids = itertools.count(1)


class Recorder:
    """One CSV row per request, and the full answer of every finding."""

    def __init__(self, out: Path) -> None:
        self._requests = (out / "requests.csv").open("w", newline="", buffering=1 << 16)
        self._writer = csv.writer(self._requests)
        self._writer.writerow(
            ["start", "end", "kind", "status", "code", "ms", "subject", "returned", "retry_after"]
        )
        self._findings = (out / "findings.jsonl").open("w", buffering=1)

    def request(self, row: list[Any]) -> None:
        self._writer.writerow(row)

    def finding(self, record: dict[str, Any]) -> None:
        self._findings.write(json.dumps(record) + "\n")

    def close(self) -> None:
        self._requests.close()
        self._findings.close()


recorder = Recorder(OUT)


@events.quitting.add_listener
def _close(**_: Any) -> None:
    recorder.close()


def classify(status: int, body: str) -> tuple[str, Any]:
    """The answer's code ("" for a success) and its parsed JSON (None if it is not JSON)."""
    if status == 0:
        return "CONNECTION_ERROR", None
    try:
        answer = json.loads(body)
    except ValueError:
        return "NON_JSON", None
    if not isinstance(answer, dict):
        return "NON_JSON", None
    if errors := answer.get("errors"):
        codes = sorted({str((e.get("extensions") or {}).get("code", "NO_CODE")) for e in errors})
        return "+".join(codes), answer
    if status != 200 or not answer.get("data"):
        return "NO_DATA", answer
    return OK, answer


class Customer(FastHttpUser):
    """A chat widget: the customer's own token, calls as the frontend makes them."""

    wait_time = constant_throughput(float(os.environ.get("SOAK_RATE_PER_USER", "10")))
    network_timeout = 15.0
    connection_timeout = 5.0

    def post(
        self, kind: str, token: str, query: str, variables: dict[str, Any], subject: str
    ) -> tuple[str, Any]:
        """POST one operation; record it and return its code and parsed answer."""
        request_id = f"soak-{next(_request_ids)}"
        started = time.time()
        with self.client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"authorization": f"Bearer {token}", "x-request-id": request_id},
            name=kind,
            catch_response=True,
        ) as response:
            ended = time.time()
            status = int(response.status_code or 0)
            body = response.text or ""
            code, answer = classify(status, body)
            if code == OK:
                response.success()
            else:
                response.failure(f"{status} {code}")
        returned = _returned_id(kind, answer) if code == OK else ""
        retry_after = (response.headers.get("retry-after") or "") if status else ""
        milliseconds = f"{(ended - started) * 1000:.1f}"
        recorder.request([f"{started:.6f}", f"{ended:.6f}", kind, status, code, milliseconds,
                          subject, returned, retry_after])  # fmt: skip
        expected = code == OK or (status, code, bool(retry_after)) == (503, UNAVAILABLE, True)
        if not expected:
            recorder.finding({
                "start": started, "end": ended, "kind": kind, "request_id": request_id,
                "variables": variables, "status": status, "code": code,
                "retry_after": retry_after, "body": body[:4000],
                "error": repr(response.error) if status == 0 else None,
            })  # fmt: skip
        return code, answer

    @task(5)
    def hot(self) -> None:
        token, customer, _ = random.choice(HOT_ROWS)
        self.post("hot", token, HOT, {"c": customer}, customer)

    @task(2)
    def first_contact(self) -> None:
        row = COLD_RETRY.popleft() if COLD_RETRY else (COLD_NEW.popleft() if COLD_NEW else None)
        if row is None:  # every new customer has had its first contact: a hot call instead
            self.hot()
            return
        token, customer = row
        code, _ = self.post("first-contact", token, FIRST, {}, customer)
        if code != OK:
            COLD_RETRY.append(row)

    @task(2)
    def send(self) -> None:
        if KEYED and SEND_RETRY:  # the same message again, with the same key
            token, variables = SEND_RETRY.popleft()
        else:
            token, _, conversation = random.choice(HOT_ROWS)
            variables = {"id": conversation, "t": f"soak {uuid.uuid4().hex[:12]}"}
            if KEYED:
                variables["k"] = str(uuid.uuid4())
        code, _ = self.post(
            "send", token, SEND_KEYED if KEYED else SEND, variables, variables["id"]
        )
        if KEYED and code != OK:
            SEND_RETRY.append((token, variables))

    @task(1)
    def messages(self) -> None:
        token, _, conversation = random.choice(HOT_ROWS)
        self.post("list", token, LIST, {"id": conversation}, conversation)


def _returned_id(kind: str, answer: dict[str, Any]) -> str:
    """The id a success hands back: the new conversation of a first contact, a sent message."""
    data = answer["data"]
    if kind == "first-contact":
        return str(data["adminConversation"]["conversation"]["id"])
    if kind == "send":
        return str(data["sendMessage"]["id"])
    return ""
