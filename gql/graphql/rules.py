"""What a document may cost, measured before graphql-core validates it.

graphql-core's OverlappingFieldsCanBeMergedRule compares every pair of fields that share a
response name, and the fields below them, pair by pair: 390 repeated selections of one field
cost over a second of CPU, in the same pass as any rule that would refuse them. So every place
that validates (the executor's ValidatedDocuments, the fast path's compiler, the WebSocket
subscribe gate) runs this pre-pass first, and graphql-core only for a document that passes it.
The pre-pass measures:

- depth, aliases and fields of each operation with fragments expanded (MAX_QUERY_DEPTH,
  MAX_ALIASES, MAX_FIELDS), in one memoized walk: each fragment is measured once and its
  spreads add its figures;
- the document's validation cost (MAX_VALIDATION_COST): OPERATION_COST an operation, 1 a
  selection once fragments are expanded, and 1 a pair of what the overlapping-fields rule
  compares at most: in each selection set, merged with the selection sets it merges with
  (fragments and inline fragments flattened, same-named fields' selections merged, level by
  level), the pairs of fields that share a response name and the pairs of fragment spreads.
  That walk expands fragments, so it spends from the limit as it goes and stops once it is
  spent: it never does more work than the limit allows.

Fragments no operation uses are measured too: graphql-core validates them as well.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from graphql import (
    ASTValidationRule,
    DocumentNode,
    ExecutableDefinitionNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionNode,
    SelectionSetNode,
    ValidationRule,
    validate,
)

# What an operation costs validation by itself, in the cost's units (a selection, a pair of
# fields compared: about 10 µs of graphql-core's validation at worst): graphql-core walks each
# operation again for its variables, in three rules. Measured (bench/documents.py): 1,000
# operations of one field each take 180 ms to validate, one operation of 1,000 fields 43 ms.
OPERATION_COST = 20


class OperationLimits:
    """Depth, alias, field and validation-cost limits, checked before validation."""

    def __init__(self, *, max_depth: int, max_aliases: int, max_fields: int, max_cost: int) -> None:
        self.max_depth = max_depth
        self.max_aliases = max_aliases
        self.max_fields = max_fields
        self.max_cost = max_cost

    def rule(self) -> type[ValidationRule]:
        """A validation rule class carrying these limits; build it once (ValidatedDocuments
        keys on the rule classes). ``pre_pass`` finds the limits through it among a schema's
        rules; as a rule, it checks depth, aliases and fields again wherever graphql-core's own
        ``validate`` runs it."""
        limits = self

        class OperationLimitsRule(ValidationRule):
            operation_limits: ClassVar[OperationLimits] = limits

            def enter_document(self, node: DocumentNode, *_args: object) -> None:
                for error in limits.figure_refusals(_roots(node)):
                    self.report_error(error)

        return OperationLimitsRule

    def refusals(self, document: DocumentNode) -> list[GraphQLError]:
        """The pre-pass: the errors that refuse ``document`` before it is validated."""
        try:
            roots = _roots(document)
            errors = self.figure_refusals(roots)
            if errors:
                return errors
            _, over = self._walk(roots)
        except RecursionError:  # fragments spreading fragments hundreds deep
            return [GraphQLError("The document nests fragments too deeply.")]
        if over is None:
            return []
        return [
            GraphQLError(
                f"The document costs more than {self.max_cost} to validate: too many "
                "selections once fragments are expanded, or too many fields with one response "
                f"name or fragment spreads in one selection set. Allowed: {self.max_cost}",
                over,
            )
        ]

    def figure_refusals(self, roots: _Roots) -> list[GraphQLError]:
        """Depth, aliases and fields of each operation, and of each fragment no operation
        uses, fragments expanded."""
        errors = []
        for definition, figures in roots.measured:
            name = definition.name.value if definition.name else "anonymous"
            errors += [GraphQLError(message, definition) for message in self.check(name, figures)]
        return errors

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

    def cost(self, document: DocumentNode) -> int:
        """The document's validation cost, or the first figure over ``max_cost`` (the walk
        stops there)."""
        cost, _ = self._walk(_roots(document))
        return cost

    def _walk(self, roots: _Roots) -> tuple[int, ExecutableDefinitionNode | None]:
        """The validation cost, and the definition where it went over ``max_cost`` (None: it
        did not)."""
        cost = _Cost(roots.fragments, self.max_cost)
        for definition, _ in roots.measured:
            try:
                if isinstance(definition, OperationDefinitionNode):
                    cost.spend(OPERATION_COST)
                cost.merged([(definition.selection_set, frozenset())])
            except _OverBudget:
                return self.max_cost - cost.left, definition
        return self.max_cost - cost.left, None


def limits_among(rules: Iterable[type[ASTValidationRule]]) -> OperationLimits | None:
    """The limits an OperationLimits rule among ``rules`` carries, if any."""
    for rule in rules:
        limits = getattr(rule, "operation_limits", None)
        if isinstance(limits, OperationLimits):
            return limits
    return None


def pre_pass(
    document: DocumentNode, rules: Iterable[type[ASTValidationRule]]
) -> list[GraphQLError]:
    """The pre-pass of the limits among ``rules``: errors that refuse ``document`` unvalidated."""
    limits = limits_among(rules)
    return limits.refusals(document) if limits is not None else []


def validate_document(
    schema: GraphQLSchema, document: DocumentNode, rules: Sequence[type[ASTValidationRule]]
) -> list[GraphQLError]:
    """graphql-core's ``validate``, after the pre-pass of the limits among ``rules``."""
    return pre_pass(document, rules) or validate(schema, document, rules)


@dataclass(frozen=True, slots=True)
class Figures:
    depth: int = 0  # introspection fields (__schema, __type) are not counted
    aliases: int = 0
    fields: int = 0

    def __add__(self, other: Figures) -> Figures:
        return Figures(
            max(self.depth, other.depth), self.aliases + other.aliases, self.fields + other.fields
        )


@dataclass(frozen=True, slots=True)
class _Roots:
    """The definitions graphql-core validates on their own, measured: the operations, and the
    fragment definitions no operation reaches (unused, or shadowed by one of the same name)."""

    fragments: dict[str, FragmentDefinitionNode]
    measured: list[tuple[ExecutableDefinitionNode, Figures]]


def _roots(document: DocumentNode) -> _Roots:
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    measure = _Measure(fragments)
    measured: list[tuple[ExecutableDefinitionNode, Figures]] = [
        (d, measure.selections(d))
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
    ]
    for definition in document.definitions:
        if isinstance(definition, FragmentDefinitionNode) and (
            definition.name.value not in measure.memo
            or fragments[definition.name.value] is not definition
        ):
            measured.append((definition, measure.selections(definition)))
    return _Roots(fragments, measured)


class _Measure:
    """Figures of selection sets, each fragment measured once (memoized by name)."""

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


class _OverBudget(Exception):
    """The validation cost exceeds the limit."""


# A selection set to merge, with the fragments it lies within (a spread of one of them there
# closes a cycle: it is another rule's error, and expands to nothing here).
_Scoped = tuple[SelectionSetNode, frozenset[str]]


class _Cost:
    """Validation's cost over the document with fragments expanded, spent from ``left``."""

    def __init__(self, fragments: dict[str, FragmentDefinitionNode], budget: int) -> None:
        self.fragments = fragments
        self.left = budget

    def merged(self, selection_sets: list[_Scoped]) -> None:
        """Spend for the selection sets that merge at one response path, then for the
        fields below them, merged by response name."""
        same_name: dict[str, int] = {}
        below: dict[str, list[_Scoped]] = {}
        spreads = 0
        stack: list[tuple[Iterator[SelectionNode], frozenset[str]]] = [
            (iter(selection_set.selections), within) for selection_set, within in selection_sets
        ]
        while stack:
            selections, within = stack[-1]
            selection = next(selections, None)
            if selection is None:
                stack.pop()
                continue
            self.spend(1)
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                same_name[key] = same_name.get(key, 0) + 1
                if selection.selection_set is not None:
                    below.setdefault(key, []).append((selection.selection_set, within))
            elif isinstance(selection, InlineFragmentNode):
                stack.append((iter(selection.selection_set.selections), within))
            elif isinstance(selection, FragmentSpreadNode):
                spreads += 1
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is not None and name not in within:
                    stack.append((iter(fragment.selection_set.selections), within | {name}))
        pairs = sum(n * (n - 1) // 2 for n in same_name.values()) + spreads * (spreads - 1) // 2
        self.spend(pairs)
        for selection_sets_below in below.values():
            self.merged(selection_sets_below)

    def spend(self, cost: int) -> None:
        self.left -= cost
        if self.left < 0:
            raise _OverBudget
