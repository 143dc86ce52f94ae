"""No document a real client sends is refused by the limits' pre-pass (gql/graphql/rules.py).

The documents are collected from where they are written: the client tests (tests/clients/*.mjs),
the demo pages (gql/http/demo/*.js), the README's GraphQL recipes, and the string literals of
bench/ and tests/ that parse as GraphQL documents. Each must pass the pre-pass with the default
settings, as written and as Apollo Client sends it (``__typename`` added to every selection set).
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    NameNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Visitor,
    parse,
    print_ast,
    visit,
)

from gql.graphql.rules import pre_pass
from gql.graphql.schema import validation_rules
from gql.graphql.settings import GraphQLSettings

ROOT = Path(__file__).resolve().parents[2]
EXECUTABLE = re.compile(r"\s*(query|mutation|subscription|fragment|\{)")
PLACEHOLDER = "x1"  # for an f-string's replacement fields: a name, a value, or inside a string


def javascript_documents(path: Path) -> Iterator[str]:
    """Template and string literals that are GraphQL documents, with the ``${NAME}`` of the
    file's own constants filled in."""
    text = path.read_text()
    constants: dict[str, str] = {}
    for name, template, string, number in re.findall(
        r'const (\w+) = (?:gql)?(?:`(.*?)`|"((?:[^"\\\n]|\\.)*)"|(\d+));', text, re.DOTALL
    ):
        constants[name] = template or string or number
    for literal in [*constants.values(), *re.findall(r'"((?:[^"\\\n]|\\.)*)"', text)]:
        filled = literal
        while match := re.search(r"\$\{(\w+)\}", filled):
            filled = filled.replace(match.group(0), constants[match.group(1)])
        if is_document(filled):
            yield filled


def readme_documents() -> Iterator[str]:
    """Each operation of the README's ``graphql`` blocks (a block lists several)."""
    for block in re.findall(r"```graphql\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL):
        document = parse(block)
        fragments = [d for d in document.definitions if isinstance(d, FragmentDefinitionNode)]
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode):
                yield print_ast(DocumentNode(definitions=(definition, *fragments)))


def python_documents(path: Path) -> Iterator[str]:
    """String literals (f-strings with their fields filled in) that parse as documents."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            literal = node.value
        elif isinstance(node, ast.JoinedStr):
            literal = "".join(
                part.value if isinstance(part, ast.Constant) else PLACEHOLDER
                for part in node.values
            )
        else:
            continue
        if is_document(literal):
            yield literal


def is_document(literal: str) -> bool:
    """Whether a literal is a GraphQL document that selects something."""
    if not EXECUTABLE.match(literal):
        return False
    try:
        document = parse(literal)
    except GraphQLError:
        return False
    executable = (OperationDefinitionNode, FragmentDefinitionNode)
    return any(
        isinstance(d, executable) and d.selection_set.selections for d in document.definitions
    )


def collected() -> list[tuple[str, str]]:
    """(where, document) for every document found."""
    found: list[tuple[str, str]] = []
    scripts = [*sorted((ROOT / "tests/clients").glob("*.mjs"))]
    scripts += sorted((ROOT / "gql/http/demo").glob("*.js"))
    for path in scripts:
        found += [(path.name, document) for document in javascript_documents(path)]
    found += [("README.md", document) for document in readme_documents()]
    for directory in ("bench", "tests"):
        for path in sorted((ROOT / directory).rglob("*.py")):
            if path.name != "test_document_limits.py":  # built to be refused
                where = str(path.relative_to(ROOT))
                found += [(where, document) for document in python_documents(path)]
    return found


DOCUMENTS = collected()
RULES = validation_rules(GraphQLSettings())


class AddTypename(Visitor):
    """What Apollo Client's cache does to a document: ``__typename`` in every selection set
    but an operation's own."""

    def leave_selection_set(
        self, node: SelectionSetNode, _key: Any, parent: Any, *_args: Any
    ) -> SelectionSetNode | None:
        if isinstance(parent, OperationDefinitionNode) or any(
            isinstance(s, FieldNode) and s.name.value == "__typename" and not s.alias
            for s in node.selections
        ):
            return None
        typename = FieldNode(name=NameNode(value="__typename"), arguments=(), directives=())
        return SelectionSetNode(selections=(*node.selections, typename))


def test_documents_are_found_where_clients_write_them() -> None:
    found = Counter(where for where, _ in DOCUMENTS)
    assert found["apollo.mjs"] == 6 and found["websocket.mjs"] == 3
    assert found["chat.js"] == 5 and found["inbox.js"] == 10
    assert found["README.md"] == 9
    assert len(DOCUMENTS) > 100


@pytest.mark.parametrize(("where", "document"), DOCUMENTS, ids=[w for w, _ in DOCUMENTS])
def test_no_document_a_client_sends_is_refused(where: str, document: str) -> None:
    parsed = parse(document)
    assert pre_pass(parsed, RULES) == [], document
    with_typename = visit(parsed, AddTypename())
    assert pre_pass(with_typename, RULES) == [], print_ast(with_typename)
