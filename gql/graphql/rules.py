"""Validation rules and caches that bound what a document may cost: depth, aliases and fields
measured once per fragment, and parse and validation caches for small documents only."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionNode,
    ValidationRule,
)
from strawberry.extensions import ParserCache, ValidationCache

CACHEABLE_QUERY_CHARS = 8192


class OperationLimits:
    """Depth, alias and size limits computed once per fragment (a memoized walk).

    Strawberry's depth and alias limiters walk a fragment again at every spread, so a few
    hundred bytes of fragments spreading each other can pin a CPU for minutes before they
    answer. Here each fragment is measured once and spreads multiply its figures, so
    validation cost grows with the document's size, not with its expansion.
    """

    def __init__(self, *, max_depth: int, max_aliases: int, max_fields: int) -> None:
        self.max_depth = max_depth
        self.max_aliases = max_aliases
        self.max_fields = max_fields

    def rule(self) -> type[ValidationRule]:
        """A validation rule class; build it once (ValidationCache keys on the class)."""
        limits = self

        class OperationLimitsRule(ValidationRule):
            def enter_document(self, node: DocumentNode, *_args: object) -> None:
                fragments = {
                    d.name.value: d
                    for d in node.definitions
                    if isinstance(d, FragmentDefinitionNode)
                }
                measure = _Measure(fragments)
                for definition in node.definitions:
                    if isinstance(definition, OperationDefinitionNode):
                        name = definition.name.value if definition.name else "anonymous"
                        for message in limits.check(name, measure.selections(definition)):
                            self.report_error(GraphQLError(message, definition))

        return OperationLimitsRule

    def check(self, operation: str, figures: Figures) -> list[str]:
        errors = []
        if figures.depth > self.max_depth:
            errors.append(f"'{operation}' exceeds maximum operation depth of {self.max_depth}")
        if figures.aliases > self.max_aliases:
            errors.append(f"{figures.aliases} aliases found. Allowed: {self.max_aliases}")
        if figures.fields > self.max_fields:
            errors.append(
                f"'{operation}' selects {figures.fields} fields once fragments are expanded. "
                f"Allowed: {self.max_fields}"
            )
        return errors


@dataclass(frozen=True, slots=True)
class Figures:
    depth: int = 0  # introspection fields (__schema, __type) are not counted
    aliases: int = 0
    fields: int = 0

    def __add__(self, other: Figures) -> Figures:
        return Figures(
            max(self.depth, other.depth), self.aliases + other.aliases, self.fields + other.fields
        )


class _Measure:
    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments
        self.memo: dict[str, Figures] = {}
        self.visiting: set[str] = set()

    def selections(self, node: Any) -> Figures:
        total = Figures()
        for selection in node.selection_set.selections if node.selection_set else ():
            total = total + self._selection(selection)
        return total

    def _selection(self, selection: SelectionNode) -> Figures:
        if isinstance(selection, FieldNode):
            inner = self.selections(selection)
            introspection = selection.name.value.startswith("__")
            return Figures(
                depth=0 if introspection else inner.depth + 1,
                aliases=inner.aliases + (1 if selection.alias else 0),
                fields=inner.fields + 1,
            )
        if isinstance(selection, InlineFragmentNode):
            return self.selections(selection)
        if isinstance(selection, FragmentSpreadNode):
            return self._fragment(selection.name.value)
        return Figures()

    def _fragment(self, name: str) -> Figures:
        if name in self.memo:
            return self.memo[name]
        if name in self.visiting or name not in self.fragments:
            return Figures()  # cycles and unknown fragments are other rules' errors
        self.visiting.add(name)
        self.memo[name] = self.selections(self.fragments[name])
        self.visiting.discard(name)
        return self.memo[name]


class SmallDocumentParserCache(ParserCache):
    """Caches parsed documents, but only small ones: a cache of 1 MiB documents is a leak."""

    def on_parse(self) -> Iterator[None]:
        if len(self.execution_context.query or "") > CACHEABLE_QUERY_CHARS:
            yield  # Strawberry parses it, uncached
            return
        yield from super().on_parse()


class SmallDocumentValidationCache(ValidationCache):
    """Caches validation results of small documents only (errors can echo large literals)."""

    def on_validate(self) -> Iterator[None]:
        if len(self.execution_context.query or "") > CACHEABLE_QUERY_CHARS:
            yield
            return
        yield from super().on_validate()
