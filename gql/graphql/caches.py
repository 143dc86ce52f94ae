"""Caches bounded by the memory they hold: parsed documents, validated documents, fast-path plans.

A parsed document costs far more than its text: 8 KB of repeated names is over 2 MB of tokens
and nodes. So each cache is a ``ByteLRU`` (gql/caching/lru.py): entries weigh what they are
estimated to hold, and the least recently used go once the total passes the cache's setting
(PARSE_CACHE_BYTES, VALIDATION_CACHE_BYTES, PLAN_CACHE_BYTES; 0 keeps nothing). An entry heavier
than a MAX_ENTRY_SHARE-th of its cache is not kept at all, so a few large documents never flush
the small hot ones. A caller never sees a cache: a miss only parses, validates or compiles again.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from graphql import ASTValidationRule, DocumentNode
from strawberry.extensions import SchemaExtension

from gql.caching.lru import ByteLRU
from gql.graphql.rules import pre_pass

# Bytes a parsed document holds per token (with locations: a Token, its node and Location, the
# name's string), beyond the strings decoded from its text: the worst of a sample of shapes,
# measured with tracemalloc on CPython 3.11 (tests/unit/test_caches.py measures it again).
BYTES_PER_TOKEN = 640

RuleClasses = tuple[type[ASTValidationRule], ...]


def document_bytes(query: str, document: DocumentNode) -> int:
    """The estimated memory a document parsed with locations holds beyond its text (which
    its Source shares with the cache's key, counted there): the names and strings decoded from
    the text (at most the text again), and its tokens, each with what is built for it."""
    return sys.getsizeof(query) + token_count(document) * BYTES_PER_TOKEN


def token_count(document: DocumentNode) -> int:
    """The tokens of a document parsed with locations (0 without them)."""
    count = 0
    token = document.loc.start_token if document.loc else None
    while token is not None:
        count += 1
        token = token.next
    return count


class ParsedDocuments(SchemaExtension):
    """The executor's parsing: documents parsed already, by their text (PARSE_CACHE_BYTES).

    A miss is parsed by Strawberry, with the parse options of the schema's other extensions
    (MaxTokensLimiter's), and kept once it parsed; one cache per schema, so per options."""

    def __init__(self, cache: ByteLRU[str, DocumentNode]) -> None:
        self.cache = cache

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        query = context.query
        if query is None or context.graphql_document is not None:
            yield
            return
        cached = self.cache.get(query)
        if cached is not None:
            context.graphql_document = cached
            yield
            return
        yield  # Strawberry parses: a syntax error is raised here, and nothing is kept
        if context.graphql_document is not None:
            self.cache.put(
                query, context.graphql_document, document_bytes(query, context.graphql_document)
            )


class ValidatedDocuments(SchemaExtension):
    """The executor's validation: the limits' pre-pass first (gql/graphql/rules.py), then
    Strawberry's validation; documents that validated are remembered by their text and the
    rule classes (VALIDATION_CACHE_BYTES), so a hot document validates once. Documents that
    failed are not kept (their errors can hold the whole document)."""

    def __init__(self, cache: ByteLRU[tuple[str, RuleClasses], bool]) -> None:
        self.cache = cache

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        key = (context.query, tuple(context.validation_rules)) if context.query else None
        if key is not None and self.cache.get(key):
            context.pre_execution_errors = []
            yield
            return
        if context.graphql_document is not None:
            refused = pre_pass(context.graphql_document, context.validation_rules)
            if refused:
                context.pre_execution_errors = refused
                yield
                return
        yield  # Strawberry validates
        if key is not None and context.pre_execution_errors == []:
            self.cache.put(key, True, 0)
