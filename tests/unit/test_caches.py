"""Caches are bounded by the memory they hold (gql/caching/lru.py, gql/graphql/caches.py)."""

from __future__ import annotations

import gc
import sys
import tracemalloc

import pytest
from graphql import parse

from gql.caching.lru import ENTRY_OVERHEAD_BYTES, MAX_ENTRY_SHARE, ByteLRU, key_bytes
from gql.graphql.caches import BYTES_PER_TOKEN, document_bytes, token_count

UUID = '"00000000-0000-4000-8000-000000000000"'
# Shapes of documents: what each token of them costs once parsed differs with the shape.
SAMPLE = {
    "repeated names": "{ " + "a " * 4000 + "}",
    "long names": "{ " + "conversationId " * 540 + "}",
    "nested": "{ " + "a { b c d } " * 600 + "}",
    "arguments": "{ " + f"conversation(id: {UUID}) {{ id }} " * 150 + "}",
    "lists": "{ a(x: [" + "1 " * 3000 + "]) }",
    "objects": "{ a(x: {" + " ".join(f"k{i}: 1" for i in range(1000)) + "}) }",
    "variables": "query (" + " ".join(f"$v{i}: Int" for i in range(600)) + ") { a }",
    "directives": "{ a " + "@skip(if: $v) " * 500 + "}",
    "fragments": " ".join(f"fragment F{i} on Q {{ ...F{i + 1} }}" for i in range(500)),
    "strings": "{ " + 'a(x: "hello world, some text here") ' * 300 + "}",
    "one long string": '{ a(x: "' + "x" * 8000 + '") }',
    "aliases": "{ " + " ".join(f"a{i}: b" for i in range(1500)) + " }",
    "a hot document": "mutation { adminConversation { conversation { id admin { name } "
    "messages(first: 20) { edges { node { id content createdAt sender { name } } } } } } }",
}


def parsed_bytes(query: str) -> int:
    """What parsing ``query`` (with locations, as the server does) allocates and keeps."""
    gc.collect()
    tracemalloc.start()
    try:
        document = parse(query)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert document is not None
    return held


@pytest.fixture(scope="module")
def held() -> dict[str, int]:
    """What each shape of the sample holds once parsed, measured."""
    return {shape: parsed_bytes(query) for shape, query in SAMPLE.items()}


def test_the_estimate_covers_what_each_shape_of_document_holds(held: dict[str, int]) -> None:
    for shape, query in SAMPLE.items():
        estimate = document_bytes(query, parse(query))
        assert held[shape] <= estimate, f"{shape}: holds {held[shape]} bytes, estimated {estimate}"


def test_bytes_per_token_is_the_worst_shape_measured_again(held: dict[str, int]) -> None:
    worst = max(
        (held[shape] - sys.getsizeof(query)) / token_count(parse(query))
        for shape, query in SAMPLE.items()
    )
    assert worst <= BYTES_PER_TOKEN <= 1.25 * worst, f"measured {worst:.0f} bytes a token"


def test_a_document_without_locations_has_no_tokens_counted() -> None:
    assert token_count(parse("{ a }", no_location=True)) == 0
    assert token_count(parse("{ a }")) == 5  # <SOF> { a } <EOF>


def entry(value_bytes: int, key: str) -> int:
    return value_bytes + key_bytes(key) + ENTRY_OVERHEAD_BYTES


def test_the_least_recently_used_entries_go_once_the_bytes_are_spent() -> None:
    keys = [f"k{i:02}" for i in range(20)]
    cache: ByteLRU[str, int] = ByteLRU(max_bytes=entry(1000, keys[0]) * len(keys))
    for key in keys:
        cache.put(key, 1, 1000)
    assert cache.get(keys[0]) == 1  # now the most recently used

    cache.put("new", 1, 1000)

    assert list(cache) == [*keys[2:], keys[0], "new"]
    assert cache.get(keys[1]) is None
    assert cache.bytes <= cache.max_bytes


def test_an_entry_larger_than_its_share_is_not_kept() -> None:
    cache: ByteLRU[str, int] = ByteLRU(max_bytes=16_000)
    cache.put("small", 1, 100)
    cache.put("large", 2, 16_000 // MAX_ENTRY_SHARE)
    assert list(cache) == ["small"]


def test_a_discarded_entry_gives_back_its_bytes() -> None:
    cache: ByteLRU[str, int] = ByteLRU(max_bytes=1_000_000)
    cache.put("a", 1, 1000)
    cache.put("b", 2, 2000)

    cache.discard("a")
    cache.discard("missing")

    assert (cache.get("a"), list(cache), cache.bytes) == (None, ["b"], entry(2000, "b"))


def test_zero_bytes_keep_nothing() -> None:
    cache: ByteLRU[str, int] = ByteLRU(max_bytes=0)
    cache.put("a", 1, 0)
    assert len(cache) == 0 and cache.get("a") is None and cache.bytes == 0


def test_putting_a_key_again_replaces_its_entry_and_its_bytes() -> None:
    cache: ByteLRU[str, int] = ByteLRU(max_bytes=1_000_000)
    cache.put("a", 1, 1000)
    cache.put("a", 2, 3000)
    assert (cache.get("a"), len(cache), cache.bytes) == (2, 1, entry(3000, "a"))


def test_hits_and_misses_are_counted_and_a_default_tells_a_kept_none_apart() -> None:
    cache: ByteLRU[tuple[str, str | None], None] = ByteLRU(max_bytes=1_000_000)
    missing = object()
    assert cache.get(("q", None), missing) is missing
    cache.put(("q", None), None, 0)  # a document without a plan
    assert cache.get(("q", None), missing) is None
    assert (cache.hits, cache.misses) == (1, 1)
