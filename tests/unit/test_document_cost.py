"""The limits' pre-pass measures what validation would cost (gql/graphql/rules.py)."""

from __future__ import annotations

import pytest
from graphql import parse

from gql.graphql.rules import OPERATION_COST, OperationLimits

LIMITS = OperationLimits(max_depth=10, max_aliases=15, max_fields=2000, max_cost=5000)


@pytest.mark.parametrize(
    ("document", "selections", "pairs"),
    [
        ("{ a }", 1, 0),
        ("{ a a a }", 3, 3),
        ("{ a b: a c: a }", 3, 0),  # aliases: distinct response names
        ("{ x: a x: b }", 2, 1),  # one response name, two fields: compared
        ("{ a { b } a { b } }", 4, 2),  # the pair, and the pair below it
        ("{ a { b } ... on Q { a { b } } }", 5, 2),  # inline fragments flatten
        ("{ ...F ...F } fragment F on Q { a }", 4, 2),  # the spreads' pair, the fields' pair
        ("{ a { ...F } a { ...F } } fragment F on Q { b }", 6, 3),
        ("{ ...F } fragment F on Q { ...F a }", 3, 1),  # a cycle expands to nothing more
        ("{ ...Unknown }", 1, 0),
    ],
)
def test_the_cost_counts_selections_expanded_and_pairs_merged(
    document: str, selections: int, pairs: int
) -> None:
    assert LIMITS.cost(parse(document)) == OPERATION_COST + selections + pairs


def test_every_operation_and_every_unused_fragment_is_measured() -> None:
    used = "query A { a } query B { a } fragment F on Q { a a }"
    assert LIMITS.cost(parse(used)) == 2 * (OPERATION_COST + 1) + 2 + 1


def test_the_repeated_selections_of_the_issue_are_refused_cheaply() -> None:
    document = parse("{ " + "integrity { orphanedConversationCount } " * 390 + "}")

    (error,) = LIMITS.refusals(document)

    assert error.message.startswith("The document costs more than 5000 to validate")
    assert error.message.endswith("Allowed: 5000")
    assert LIMITS.cost(document) <= 5000 + 390 * 390  # the walk stopped at the first level


def test_a_fragment_that_is_never_used_cannot_hide_repeated_fields() -> None:
    document = parse(
        "{ __typename } fragment Unused on Query { "
        + "integrity { orphanedConversationCount } " * 200
        + "}"
    )
    assert LIMITS.refusals(document)


def test_many_operations_each_cost_their_share() -> None:
    many = parse(" ".join(f"query Q{i} {{ __typename }}" for i in range(300)))
    assert LIMITS.refusals(many)


def test_the_figures_refuse_before_the_cost_is_walked() -> None:
    bomb = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(30))
    document = parse(f"{{ ...F0 }} {bomb} fragment F30 on Query {{ __typename }}")

    (error,) = LIMITS.refusals(document)

    assert "fields once fragments are expanded. Allowed: 2000" in error.message


def test_fragments_nested_too_deep_to_measure_are_refused_not_raised() -> None:
    chain = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} }}" for i in range(600))
    document = parse(f"{{ ...F0 }} {chain} fragment F600 on Query {{ __typename }}")

    (error,) = LIMITS.refusals(document)

    assert error.message == "The document nests fragments too deeply."
