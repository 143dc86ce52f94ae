"""A fast path for the few documents every chat widget sends: the same answers, less work.

The hot path's database work is one indexed read, yet Strawberry's generic executor costs
several times that in Python for each request (BENCHMARKS.md). Most traffic is one of a few
small documents (the widget's `adminConversation`), so each document text is compiled once
into a plan, and requests whose document has a plan skip the executor:

- A plan exists only for a valid document with one operation whose single root field is in
  ``FAST_ROOTS`` (the very functions the resolvers call), taking at most the ``customerId``
  argument from a variable, and selecting only fields that are plain attributes (no
  resolver, no arguments), with no fragments and no directives. Anything else: no plan.
- Running a plan: coerce the variables with the schema's own scalars, call the root
  function, and project the result through the selections with the schema's own
  serializers, so values render exactly as the executor renders them.
- Whatever a plan cannot answer plainly goes to the generic path: a variable that does not
  coerce, any error raised (the generic path reports it, with its code), a null where the
  schema says non-null. Those runs only read, or repeat an idempotent get-or-create.

tests/e2e/test_fastpath.py runs every document through both paths and compares responses.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    parse,
    validate,
)

from gql.auth import Caller

MAX_PLANS = 256  # distinct documents remembered (with or without a plan): at most ~1 MB
MAX_DOCUMENT_LENGTH = 4000  # longer documents are never hot ones
MAX_OPERATION_NAME_LENGTH = 64
MAX_PLAN_TOKENS = 200  # hot documents are a few dozen tokens


UNSUPPORTED = object()  # an argument shape the fast path does not take
Variable = str | None | object


class Fallback(Exception):
    """This request is for the generic path."""


@dataclass(frozen=True, slots=True)
class Selection:
    key: str  # the response key (alias or field name)
    attribute: str | None  # the Python attribute; None for __typename
    typename: str | None  # for __typename
    serialize: Callable[[Any], Any] | None  # leaf fields
    nullable: bool
    children: tuple[Selection, ...] | None  # object fields


@dataclass(frozen=True, slots=True)
class Plan:
    root: Callable[[Caller, UUID | None], object]
    key: str
    variable: str | None  # the variable that carries customerId, if any
    parse_variable: Callable[[Any], Any] | None
    variable_required: bool
    nullable: bool
    selections: tuple[Selection, ...]

    def run(self, caller: Caller, variables: dict[str, Any] | None) -> dict[str, Any]:
        """The response's data; raises Fallback for anything the generic path must answer."""
        customer_id = None
        if self.variable is not None and self.parse_variable is not None:
            raw = (variables or {}).get(self.variable)
            if raw is None:
                if self.variable_required:
                    raise Fallback
            else:
                try:
                    customer_id = self.parse_variable(raw)
                except (GraphQLError, TypeError, ValueError):
                    raise Fallback from None
        try:
            result = self.root(caller, customer_id)
        except Exception:
            raise Fallback from None
        if result is None and not self.nullable:
            raise Fallback
        return {self.key: None if result is None else _project(result, self.selections)}


def _project(value: object, selections: tuple[Selection, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for selection in selections:
        if selection.attribute is None:
            out[selection.key] = selection.typename
            continue
        field = getattr(value, selection.attribute)
        if field is None:
            if not selection.nullable:
                raise Fallback  # the executor would report the broken non-null field
            out[selection.key] = None
        elif selection.children is not None:
            out[selection.key] = _project(field, selection.children)
        else:
            assert selection.serialize is not None
            out[selection.key] = selection.serialize(field)
    return out


class FastPaths:
    """Plans by document text and operation name, compiled once (bounded, least recent out)."""

    def __init__(
        self,
        schema: GraphQLSchema,
        roots: dict[tuple[str, str], Callable[[Caller, UUID | None], object]],
        *,
        rules: Sequence[type[ASTValidationRule]],
        max_tokens: int,
    ) -> None:
        """``rules`` and ``max_tokens``: the executor's own, so no limit is bypassed here."""
        self.schema = schema
        self.roots = roots
        self.rules = rules
        self.max_tokens = min(max_tokens, MAX_PLAN_TOKENS)
        self.plans: OrderedDict[tuple[str, str | None], Plan | None] = OrderedDict()
        self.lock = threading.Lock()  # plans are looked up from worker threads
        self.answered = 0  # requests answered here (diagnostics and tests)

    @staticmethod
    def may_plan(query: object, operation_name: object) -> bool:
        """Cheap checks before any parsing: the shape of a hot request."""
        if not isinstance(query, str) or len(query) > MAX_DOCUMENT_LENGTH:
            return False
        return operation_name is None or (
            isinstance(operation_name, str) and len(operation_name) <= MAX_OPERATION_NAME_LENGTH
        )

    def plan_for(self, query: str, operation_name: str | None) -> Plan | None:
        """The plan of a document (compiled on first sight, in the caller's thread), or None."""
        key = (query, operation_name)
        with self.lock:
            if key in self.plans:
                self.plans.move_to_end(key)
                return self.plans[key]
        plan = self._compile(query, operation_name)
        with self.lock:
            self.plans[key] = plan
            if len(self.plans) > MAX_PLANS:
                self.plans.popitem(last=False)
        return plan

    def _compile(self, query: str, operation_name: str | None) -> Plan | None:
        try:
            document = parse(query, no_location=True, max_tokens=self.max_tokens)
        except GraphQLError:
            return None
        if validate(self.schema, document, self.rules):
            return None
        operation = _single_operation(document, operation_name)
        if operation is None or operation.directives:
            return None
        kind = operation.operation.value  # "query" or "mutation" ("subscription": no root)
        root_type = self.schema.get_root_type(operation.operation)
        fields = operation.selection_set.selections
        if root_type is None or len(fields) != 1 or not isinstance(fields[0], FieldNode):
            return None
        field = fields[0]
        root = self.roots.get((kind, field.name.value))
        definition = root_type.fields.get(field.name.value)
        if root is None or definition is None or field.directives:
            return None
        variable = _customer_id_variable(field, operation)
        if variable is UNSUPPORTED:
            return None
        parse_variable, required = None, False
        if variable is not None:
            declared = next(
                v for v in operation.variable_definitions or () if v.variable.name.value == variable
            )
            if declared.default_value is not None:
                return None
            scalar = self.schema.get_type("UUID")
            assert isinstance(scalar, GraphQLScalarType)
            parse_variable = scalar.parse_value
            required = declared.type.kind == "non_null_type"
        output = definition.type
        nullable = not isinstance(output, GraphQLNonNull)
        object_type = output.of_type if isinstance(output, GraphQLNonNull) else output
        if not isinstance(object_type, GraphQLObjectType) or field.selection_set is None:
            return None
        selections = _selections(object_type, field.selection_set)
        if selections is None:
            return None
        key = field.alias.value if field.alias else field.name.value
        assert variable is None or isinstance(variable, str)
        return Plan(root, key, variable, parse_variable, required, nullable, selections)


def _single_operation(
    document: DocumentNode, operation_name: str | None
) -> OperationDefinitionNode | None:
    definitions = document.definitions
    if len(definitions) != 1 or not isinstance(definitions[0], OperationDefinitionNode):
        return None  # fragments, or several operations: the generic path
    operation = definitions[0]
    if operation_name is not None and (
        operation.name is None or operation.name.value != operation_name
    ):
        return None
    return operation


def _customer_id_variable(field: FieldNode, operation: OperationDefinitionNode) -> Variable:
    """The variable passed as customerId (None: no argument), or UNSUPPORTED."""
    declared = operation.variable_definitions or ()
    if len(declared) > 1:
        return UNSUPPORTED
    if not field.arguments:
        return UNSUPPORTED if declared else None
    if len(field.arguments) != 1 or field.arguments[0].name.value != "customerId":
        return UNSUPPORTED
    value = field.arguments[0].value
    if not isinstance(value, VariableNode) or not declared:
        return UNSUPPORTED
    return value.name.value


def _selections(
    object_type: GraphQLObjectType, selection_set: SelectionSetNode
) -> tuple[Selection, ...] | None:
    """The plan of a selection set over plain attributes, or None when it needs the executor."""
    planned: list[Selection] = []
    keys: set[str] = set()
    for node in selection_set.selections:
        if not isinstance(node, FieldNode) or node.directives or node.arguments:
            return None
        name = node.name.value
        key = node.alias.value if node.alias else name
        if key in keys:
            return None  # the executor merges repeated keys; the executor answers those
        keys.add(key)
        if name == "__typename":
            planned.append(Selection(key, None, object_type.name, None, False, None))
            continue
        field = object_type.fields.get(name)
        attribute = _plain_attribute(field)
        if field is None or attribute is None:
            return None
        output = field.type
        nullable = not isinstance(output, GraphQLNonNull)
        named = output.of_type if isinstance(output, GraphQLNonNull) else output
        if isinstance(named, GraphQLScalarType) and node.selection_set is None:
            planned.append(Selection(key, attribute, None, named.serialize, nullable, None))
        elif isinstance(named, GraphQLObjectType) and node.selection_set is not None:
            children = _selections(named, node.selection_set)
            if children is None:
                return None
            planned.append(Selection(key, attribute, None, None, nullable, children))
        else:
            return None  # lists, enums, interfaces: the executor
    return tuple(planned)


def _plain_attribute(field: GraphQLField | None) -> str | None:
    """The attribute behind a field with no resolver and no arguments, else None."""
    if field is None or field.args:
        return None
    definition = (field.extensions or {}).get("strawberry-definition")
    if definition is None or definition.base_resolver is not None:
        return None
    if definition.permission_classes or definition.extensions or definition.directives:
        return None  # whatever they check or add, the executor does it
    return str(definition.python_name)
