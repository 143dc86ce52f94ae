"""Automatic persisted queries as Apollo's link uses them: hash first, the document on a miss,
the hash alone afterwards; answered alike by the fast path and the executor's path."""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import pytest

from gql.caching.lru import ENTRY_OVERHEAD_BYTES, MAX_ENTRY_SHARE
from gql.persisted.queries import PersistedQueries, PersistedQueryError
from tests.e2e.conftest import Pair, answered, same, user_token
from tests.factories import make_admin, make_user

pytestmark = pytest.mark.e2e

READ = "query Chat { adminConversation { admin { name } } }"
OPEN = "mutation Open { adminConversation { created } }"


def persisted(query: str, *, version: int = 1) -> dict[str, Any]:
    digest = hashlib.sha256(query.encode()).hexdigest()
    return {"persistedQuery": {"version": version, "sha256Hash": digest}}


def post(pair: Pair, token: str | None, **body: Any) -> tuple[Any, Any]:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    content = json.dumps(body).encode()  # ASCII, escapes and all, as a client's JSON may be
    return (
        pair.fast.post("/graphql", content=content, headers=headers),
        pair.generic.post("/graphql", content=content, headers=headers),
    )


def get(pair: Pair, token: str, **params: Any) -> tuple[Any, Any]:
    query = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in params.items()}
    headers = {"authorization": f"Bearer {token}"}
    return (
        pair.fast.get("/graphql", params=query, headers=headers),
        pair.generic.get("/graphql", params=query, headers=headers),
    )


def customer_token() -> str:
    return user_token(make_user())


def only_code(body: dict[str, Any]) -> tuple[str, str]:
    (error,) = body["errors"]
    return error["extensions"]["code"], error["message"]


def test_an_unknown_hash_asks_for_the_document_as_apollo_expects(pair: Pair) -> None:
    token = customer_token()
    for fast, generic in (
        post(pair, token, extensions=persisted(READ)),
        get(pair, token, extensions=persisted(READ)),
    ):
        body = same(fast, generic)
        assert fast.status_code == 200  # Apollo Server's status: the link retries on it
        assert only_code(body) == ("PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound")
        assert "data" not in body
        assert fast.headers["cache-control"] == "private, no-cache, must-revalidate"


def test_a_document_sent_with_its_hash_is_run_by_hash_afterwards(pair: Pair) -> None:
    make_admin("Ada Admin")
    token = customer_token()
    post(pair, token, query=OPEN)
    learned = post(pair, token, query=READ, extensions=persisted(READ))
    before = answered(pair.fast)

    by_hash_post = post(pair, token, extensions=persisted(READ))
    by_hash_get = get(pair, token, extensions=persisted(READ))

    assert answered(pair.fast) == before + 1  # the POST by hash: on the fast path
    expected = {"data": {"adminConversation": {"admin": {"name": "Ada Admin"}}}}
    for fast, generic in (learned, by_hash_post, by_hash_get):
        assert same(fast, generic) == expected


def test_a_hash_that_is_not_its_document_s_is_a_bad_request(pair: Pair) -> None:
    token = customer_token()
    surrogate = "{ __typename }\ud800"  # a lone surrogate: valid JSON, no UTF-8 of its own
    for fast, generic in (
        post(pair, token, query=surrogate, extensions=persisted("{ __typename }")),
        post(pair, token, query=READ, extensions=persisted(READ + " ")),
        post(pair, token, query=READ, extensions=persisted(READ, version=2)),
        post(pair, token, extensions={"persistedQuery": {"version": 1, "sha256Hash": "x"}}),
    ):
        assert fast.status_code == 400
        assert only_code(same(fast, generic))[0] == "BAD_REQUEST"
    fast, generic = post(pair, token, extensions=persisted(READ + " "))
    assert only_code(same(fast, generic))[0] == "PERSISTED_QUERY_NOT_FOUND"  # never learned


def test_a_document_that_does_not_validate_is_not_learned(pair: Pair) -> None:
    token = customer_token()
    failed = post(pair, token, query="{ nope }", extensions=persisted("{ nope }"))
    assert only_code(same(*failed))[0] == "GRAPHQL_VALIDATION_FAILED"

    fast, generic = post(pair, token, extensions=persisted("{ nope }"))

    assert only_code(same(fast, generic))[0] == "PERSISTED_QUERY_NOT_FOUND"


def test_anonymous_callers_teach_nothing(pair: Pair) -> None:
    anonymous = post(pair, None, query="{ __typename }", extensions=persisted("{ __typename }"))
    assert same(*anonymous) == {"data": {"__typename": "Query"}}

    fast, generic = post(pair, customer_token(), extensions=persisted("{ __typename }"))

    assert only_code(same(fast, generic))[0] == "PERSISTED_QUERY_NOT_FOUND"


def test_a_mutation_by_hash_over_get_is_refused(pair: Pair) -> None:
    make_admin()
    token = customer_token()
    post(pair, token, query=READ, extensions=persisted(OPEN))  # a mismatch teaches nothing
    post(pair, token, query=OPEN, extensions=persisted(OPEN))  # opens the chat, learned
    fast, generic = get(pair, token, extensions=persisted(OPEN))
    assert fast.status_code == 405
    assert only_code(same(fast, generic))[0] == "METHOD_NOT_ALLOWED"


def test_the_store_keeps_the_most_recently_used_documents_within_its_budget() -> None:
    documents = [f"{{ __typename }} # {i:04}" for i in range(20)]  # 21 characters each
    digests = [hashlib.sha256(d.encode()).hexdigest() for d in documents]
    entry = sys.getsizeof(documents[0]) + sys.getsizeof(digests[0]) + ENTRY_OVERHEAD_BYTES
    store = PersistedQueries(max_bytes=entry * MAX_ENTRY_SHARE)  # room for 16 of them
    for digest, document in zip(digests[:16], documents[:16], strict=True):
        store.remember(digest, document)
    assert store.document(digests[0], None) == documents[0]  # used: now the most recent

    store.remember(digests[16], documents[16])  # over budget: the least recently used goes

    assert len(store) == 16
    with pytest.raises(PersistedQueryError):
        store.document(digests[1], None)
    assert store.document(digests[0], None) == documents[0]
    big = "x" * 2000
    store.remember(hashlib.sha256(big.encode()).hexdigest(), big)  # over its share of the budget
    store.remember(digests[17], documents[18])  # a hash that is not its document's
    assert len(store) == 16
    with pytest.raises(PersistedQueryError):
        store.document(digests[17], None)
