"""What the worst documents cost to parse, refuse or validate (issue #23), in one process.

Each document is built as badly as the limits let it be: either past them (the pre-pass must
refuse it cheaply) or scaled up to the largest size the limits still let through (graphql-core
then validates it in full: the worst an accepted document costs). Within MAX_TOKENS and
MAX_BODY_BYTES, with the default settings (production: the introspection rule too).

For each: CPU milliseconds (``time.process_time``, the best of ``--runs``) to parse (with the
token limit, as the server parses), for the pre-pass (gql/graphql/rules.py), and for
graphql-core's validation when the pre-pass lets the document through; "before" is parse and
validation as they ran before the pre-pass (graphql-core's ``validate`` with the same rules, the
limits rule inside it). The cost column is the pre-pass's figure (">" once the walk stopped).

    python -m bench.documents [--runs 5] [--no-before]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

from graphql import DocumentNode, GraphQLError, parse, validate

from gql.graphql.caches import token_count
from gql.graphql.rules import OperationLimits, limits_among, pre_pass
from gql.graphql.schema import build_schema, validation_rules
from gql.http.settings import Settings

SETTINGS = Settings.of(app_env="production", jwt_secret="x" * 32)
LIMITS = SETTINGS.graphql
UUID = '"00000000-0000-4000-8000-000000000000"'
SLOW_S = 1.0  # a run slower than this is not repeated


@dataclass(frozen=True)
class Shape:
    name: str
    build: Callable[[int], str]  # the document of size n
    refused_at: int | None = None  # a size past the limits; None: the largest size let through


def repeated(selection: str, head: str = "query ($id: UUID!)") -> Callable[[int], str]:
    return lambda n: f"{head} {{ " + " ".join([selection] * n) + " }"


def spread_together(body: str) -> Callable[[int], str]:
    def build(n: int) -> str:
        spreads = " ".join(f"...F{i}" for i in range(n))
        fragments = " ".join(f"fragment F{i} on Query {{ {body.format(i=i)} }}" for i in range(n))
        return f"{{ {spreads} }} {fragments}"

    return build


def doubling_fragments(n: int) -> str:
    """F0 expands to 2**n selections: each F{i} spreads F{i + 1} twice."""
    fragments = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(n))
    return f"{fragments} fragment F{n} on Query {{ __typename }}"


def doubling(n: int) -> str:
    return f"{{ ...F0 }} {doubling_fragments(n)}"


def chain_under_sets(n: int, chain: int = 50) -> str:
    sets = " ".join(["integrity { orphanedConversationCount ...F0 }"] * n)
    fragments = " ".join(
        f"fragment F{i} on IntegrityReport {{ ...F{i + 1} }}" for i in range(chain)
    )
    last = f"fragment F{chain} on IntegrityReport {{ orphanedConversationCount }}"
    return f"{{ {sets} }} {fragments} {last}"


def operations_sharing(n: int) -> str:
    operations = " ".join(f"query Q{i} {{ ...F }}" for i in range(n))
    return f"{operations} fragment F on Query {{ integrity {{ orphanedConversationCount }} }}"


def operations_with_usages(n: int, usages: int = 700) -> str:
    operations = " ".join(f"query Q{i}($v: UUID!) {{ ...F }}" for i in range(n))
    argument = " ".join(["$v"] * usages)
    return f"{operations} fragment F on Query {{ conversation(id: [{argument}]) {{ id }} }}"


def wide_by_fragments(n: int) -> str:
    """n levels of fragments, each spreading the next twice: 2**n fields, all valid."""
    fragments = " ".join(
        f"fragment F{i} on IntegrityReport {{ ...F{i + 1} ...F{i + 1} }}" for i in range(n)
    )
    last = f"fragment F{n} on IntegrityReport {{ orphanedConversationCount }}"
    return f"{{ integrity {{ ...F0 }} }} {fragments} {last}"


MESSAGES = "conversation(id: $id) { messages(first: 1) { edges { node { sender { name } } } } }"
SHAPES = [
    Shape(
        "repeated `integrity { orphanedConversationCount }`",
        repeated("integrity { orphanedConversationCount }", "query"),
        390,
    ),
    Shape("repeated `conversation(id: $id) { id }`", repeated("conversation(id: $id) { id }"), 550),
    Shape("repeated 6-deep path with arguments", repeated(MESSAGES), 150),
    Shape("repeated `__typename`", repeated("__typename", "query"), 1990),
    Shape("one alias, many fields", lambda n: "{ " + "a: __typename " * n + "}", 1650),
    Shape(
        "same response name, different arguments",
        lambda n: (
            "{ "
            + " ".join(
                f'conversation(id: "00000000-0000-4000-8000-{i:012d}") {{ id }}' for i in range(n)
            )
            + " }"
        ),
        500,
    ),
    Shape(
        "fragments spread together (same fields)",
        spread_together("integrity {{ orphanedConversationCount }}"),
        400,
    ),
    Shape("fragments spread together (unknown fields)", spread_together("f{i}"), 450),
    Shape("fragments spreading fragments (2**n)", doubling, 15),
    Shape("a fragment chain under many selection sets", chain_under_sets, 200),
    Shape("operations sharing a fragment", operations_sharing, 600),
    Shape("operations sharing a fragment of 700 variable uses", operations_with_usages, 300),
    Shape("valid: 2**n fields through fragments", wide_by_fragments, 11),
    Shape(
        "valid: many small operations",
        lambda n: " ".join(f"query Q{i} {{ __typename }}" for i in range(n)),
        1000,
    ),
    Shape("many anonymous operations", lambda n: "{ __typename } " * n, 1250),
    Shape(
        "many unused variables",
        lambda n: "query (" + " ".join(f"$v{i}: Int" for i in range(n)) + ") { __typename }",
        None,
    ),
    Shape(
        "many unknown arguments",
        lambda n: "{ __typename(" + " ".join(f"a{i}: 1" for i in range(n)) + ") }",
        None,
    ),
    Shape("one argument repeated", lambda n: "{ __typename(" + "a: 1 " * n + ") }", None),
    Shape("many unknown directives", lambda n: "{ __typename " + "@x " * n + "}", None),
    Shape(
        "one directive repeated", lambda n: "{ __typename " + "@skip(if: false) " * n + "}", None
    ),
    Shape(
        "a list argument of many values",
        lambda n: "{ conversation(id: [" + " ".join([UUID] * n) + "]) { id } }",
        None,
    ),
    Shape(
        "deep nesting (the parser's limit)", lambda n: "{" + "a{" * n + "b" + "}" * (n + 1), None
    ),
    Shape(
        "64 KiB string literal", lambda n: '{ conversation(id: "' + "x" * n + '") { id } }', None
    ),
    Shape(
        "64 KiB block string of newlines",
        lambda n: '{ conversation(id: """' + "\n" * n + '""") { id } }',
        None,
    ),
    Shape("64 KiB comment", lambda n: "# " + "x" * n + "\n{ __typename }", None),
]
# Sizes for the shapes without a refused size: as many as the token and body limits allow.
FILL = {
    "many unused variables": 480,
    "many unknown arguments": 640,
    "one argument repeated": 640,
    "many unknown directives": 980,
    "one directive repeated": 280,
    "a list argument of many values": 1990,
    "deep nesting (the parser's limit)": 199,
    "64 KiB string literal": SETTINGS.http.max_body_bytes - 100,
    "64 KiB block string of newlines": SETTINGS.http.max_body_bytes - 100,
    "64 KiB comment": SETTINGS.http.max_body_bytes - 100,
}


@dataclass
class Row:
    name: str
    chars: int
    tokens: int | str
    cost: str
    parse_ms: float
    pre_pass_ms: float
    validate_ms: float
    before_ms: float | None
    answer: str

    @property
    def total_ms(self) -> float:
        return self.parse_ms + self.pre_pass_ms + self.validate_ms


def best(run: Callable[[], object], runs: int) -> float:
    """The least CPU milliseconds of up to ``runs`` runs (one only when it is slow)."""
    times = []
    for _ in range(runs):
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
        if times[-1] > SLOW_S:
            break
    return 1000 * min(times)


def largest_let_through(shape: Shape, limits: OperationLimits) -> int:
    """The largest n whose document the limits and the token limit let through."""
    low, high = 1, 2
    while passes(shape.build(high), limits):
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if passes(shape.build(middle), limits) else (low, middle)
    return low


def passes(query: str, limits: OperationLimits) -> bool:
    try:
        document = parse(query, max_tokens=SETTINGS.graphql.max_tokens)
    except GraphQLError:
        return False
    return not limits.refusals(document)


def measure(name: str, query: str, runs: int, *, before: bool) -> Row:
    schema = build_schema(LIMITS, production=True)._schema
    rules = validation_rules(LIMITS, production=True)
    limits = limits_among(rules)
    assert limits is not None
    parsed: list[DocumentNode] = []

    def parse_it() -> None:
        parsed[:] = [parse(query, max_tokens=SETTINGS.graphql.max_tokens)]

    try:
        parse_ms = best(parse_it, runs)
    except GraphQLError as error:
        return Row(name, len(query), "-", "-", 0.0, 0.0, 0.0, None, _short(error.message))
    document = parsed[0]
    refused: list[GraphQLError] = []
    pre_pass_ms = best(lambda: refused.__setitem__(slice(None), pre_pass(document, rules)), runs)
    errors: list[GraphQLError] = []
    validate_ms = (
        0.0
        if refused
        else best(lambda: errors.__setitem__(slice(None), validate(schema, document, rules)), runs)
    )
    before_ms = best(lambda: validate(schema, document, rules), runs) + parse_ms if before else None
    cost = limits.cost(document)
    answer = refused or errors
    return Row(
        name,
        len(query),
        token_count(parse(query)),
        f">{limits.max_cost}" if cost > limits.max_cost else str(cost),
        parse_ms,
        pre_pass_ms,
        validate_ms,
        before_ms,
        _short(answer[0].message) + (f" (+{len(answer) - 1})" if len(answer) > 1 else "")
        if answer
        else "valid",
    )


def _short(message: str) -> str:
    first = message.splitlines()[0]
    return (first[:70] + "…") if len(first) > 70 else first


def table(rows: list[Row], *, before: bool) -> str:
    heads = ["document", "KB", "tokens", "cost", "parse ms", "pre-pass ms", "validate ms"]
    heads += ["total ms", *(["before ms"] if before else []), "answer"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row in rows:
        cells = [
            row.name,
            f"{row.chars / 1024:.1f}",
            str(row.tokens),
            row.cost,
            f"{row.parse_ms:.1f}",
            f"{row.pre_pass_ms:.1f}",
            f"{row.validate_ms:.1f}",
            f"**{row.total_ms:.1f}**",
        ]
        if before:
            cells.append(f"{row.before_ms:.1f}" if row.before_ms is not None else "-")
        lines.append("| " + " | ".join([*cells, row.answer.replace("|", "/")]) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-before", action="store_true", help="skip the before figures")
    args = parser.parse_args()
    limits = limits_among(validation_rules(LIMITS, production=True))
    assert limits is not None
    rows = []
    for shape in SHAPES:
        sizes = [shape.refused_at] if shape.refused_at is not None else [FILL[shape.name]]
        if shape.refused_at is not None:
            sizes.append(largest_let_through(shape, limits))
        for n in sizes:
            label = f"{shape.name}, n={n}"
            rows.append(measure(label, shape.build(n), args.runs, before=not args.no_before))
    print(
        f"{platform.machine()}, Python {platform.python_version()}, MAX_TOKENS "
        f"{LIMITS.max_tokens}, MAX_FIELDS {LIMITS.max_fields}, MAX_VALIDATION_COST "
        f"{LIMITS.max_validation_cost}; CPU ms, best of {args.runs}\n"
    )
    print(table(rows, before=not args.no_before))
    worst = max(rows, key=lambda row: row.total_ms)
    print(f"\nworst total: {worst.total_ms:.1f} ms ({worst.name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
