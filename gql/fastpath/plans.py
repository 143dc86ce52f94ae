"""A fast path for the few documents every chat widget sends: the same answers, less work.

The hot path's database work is one indexed read, yet Strawberry's generic executor costs
several times that in Python for each request (BENCHMARKS.md). Most traffic is one of a few
small documents (the widget's `adminConversation`), so each document text is compiled once
into a plan, and requests whose document has a plan skip the executor:

- What is planned: a valid document (the executor's own rules and token limit) with one
  operation, no directives, whose single root field is one of ``fast_roots`` (gql/graphql/
  schema.py: the very functions the resolvers call), taking only that root's arguments
  (``customerId``; ``id``; ``conversationId``, ``content``, ``clientMessageId``), literal or
  variable, which the function gets in that order (an argument not given: its default).
  Below it: fields that are plain attributes, ``__typename``, and, in queries only, the
  resolver fields of ``FAST_RESOLVERS`` (the messages page), with their arguments. No
  fragments, no repeated response keys, no interfaces, unions or enums. Anything else: no
  plan, the executor answers.
- Running a plan: coerce the variables with graphql-core's own functions, call the root
  function, and project the result with the schema's own serializers, so values render
  exactly as the executor renders them.
- A root that raises is answered here as the executor answers it (reported, coded, masked),
  never by running a mutation again; whatever else a plan cannot answer plainly (a variable
  that does not coerce, a null where the schema says non-null in a read) goes to the executor.
- Schema extensions: plans skip Strawberry's extension hooks, so each extension the schema
  runs must be listed in ``COVERED_EXTENSIONS`` with why a plan answers as if it had run;
  an unlisted one stops the server at start-up (UncoveredExtension).

tests/e2e/test_fastpath.py compares both paths on hand-picked cases and on documents that
Hypothesis generates (tests/e2e/test_fastpath_property.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableDefinitionNode,
    get_location,
    parse,
)
from graphql.execution.values import get_argument_values, get_variable_values
from strawberry.extensions import MaxTokensLimiter, SchemaExtension

from gql.auth.tokens import Caller
from gql.caching.lru import ByteLRU
from gql.graphql.caches import ParsedDocuments, ValidatedDocuments, document_bytes
from gql.graphql.errors import CodedInputErrors, StreamErrorCodes, root_field_error
from gql.graphql.rules import validate_document
from gql.observability.logs import request_id_var
from gql.observability.metrics import OperationLabel, operation_label

MAX_DOCUMENT_LENGTH = 4000  # longer documents are never hot ones
MAX_OPERATION_NAME_LENGTH = 64
MAX_PLAN_TOKENS = 200  # hot documents are a few dozen tokens


class Fallback(Exception):
    """This request is for the generic path."""


class RootFailed(Exception):
    """The root field's function raised; ``response`` is the executor's answer to that.

    Answered here, never by running the request again on the generic path: a mutation would
    run a second time (a first contact's transaction twice, a race's constraint violation
    hidden behind the retry's success), and a database that is down would be waited for twice.
    """

    def __init__(self, response: dict[str, Any]) -> None:
        super().__init__("the root field failed")
        self.response = response


@dataclass(frozen=True, slots=True)
class Selection:
    key: str  # the response key (alias or field name)
    attribute: str | None  # the Python attribute; None for __typename
    typename: str | None  # for __typename
    serialize: Callable[[Any], Any] | None  # leaf fields
    nullable: bool
    children: tuple[Selection, ...] | None  # object fields
    is_list: bool = False  # a list of objects
    resolver: Callable[..., Any] | None = None  # an allowed resolver field, called with args
    field: GraphQLField | None = None  # for its arguments
    node: FieldNode | None = None
    python_names: dict[str, str] | None = None  # GraphQL argument name -> parameter name


@dataclass(frozen=True, slots=True)
class Plan:
    root: Callable[..., object]
    arguments: tuple[str, ...]  # the root field's arguments, passed in this order
    field: GraphQLField
    node: FieldNode
    variable_definitions: tuple[VariableDefinitionNode, ...]
    schema: GraphQLSchema
    key: str
    nullable: bool
    selections: tuple[Selection, ...]
    location: dict[str, int]  # the root field's line and column, for an error's "locations"
    mutation: bool
    label: str  # the operation's metric label, as the executor's requests get it
    name: str | None  # the operation's name in the document, for the access log
    held_bytes: int  # what keeping this plan holds (its document's nodes), for the plan cache

    def run(self, caller: Caller, variables: dict[str, Any] | None) -> dict[str, Any]:
        """The response's data; raises Fallback for anything the generic path must answer,
        RootFailed for what this plan answers itself."""
        coerced = get_variable_values(self.schema, self.variable_definitions, variables or {})
        if isinstance(coerced, list):
            raise Fallback  # the executor reports variable errors, with their codes
        try:
            arguments = get_argument_values(self.field, self.node, coerced)
        except Exception:
            raise Fallback from None
        values = [arguments.get(name) for name in self.arguments]
        try:
            result = self.root(caller, *values)
        except Exception as exc:
            raise RootFailed(self._failed(exc)) from None
        try:
            if result is None and not self.nullable:
                raise Fallback
            data = None if result is None else _project(result, self.selections, coerced)
        except Exception as exc:
            if not self.mutation:
                raise Fallback from None  # a read: the executor may run it again
            # A mutation ran: running it again would repeat it (and tell the call that
            # created a conversation that it did not). Never expected: the plan projects
            # plain attributes of what the root returned.
            broken = exc if not isinstance(exc, Fallback) else RuntimeError("null for non-null")
            raise RootFailed(self._failed(broken)) from None
        return {self.key: data}

    def _failed(self, exc: Exception) -> dict[str, Any]:
        """The response the executor gives when the root field raised ``exc``."""
        error = root_field_error(
            exc, key=self.key, location=self.location, request_id=request_id_var.get()
        )
        return {"data": {self.key: None} if self.nullable else None, "errors": [error]}


def _project(value: object, selections: tuple[Selection, ...], variables: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for selection in selections:
        if selection.attribute is None:
            out[selection.key] = selection.typename
            continue
        if selection.resolver is not None:
            assert selection.field is not None and selection.node is not None
            assert selection.python_names is not None
            arguments = get_argument_values(selection.field, selection.node, variables)
            field = selection.resolver(
                value, **{selection.python_names[k]: v for k, v in arguments.items()}
            )
        else:
            field = getattr(value, selection.attribute)
        if field is None:
            if not selection.nullable:
                raise Fallback  # the executor would report the broken non-null field
            out[selection.key] = None
        elif selection.children is not None and selection.is_list:
            out[selection.key] = [_project(item, selection.children, variables) for item in field]
        elif selection.children is not None:
            out[selection.key] = _project(field, selection.children, variables)
        else:
            assert selection.serialize is not None
            out[selection.key] = selection.serialize(field)
    return out


class UncoveredExtension(Exception):
    """The schema runs an extension that the fast path would skip on hot documents."""


# What each schema extension does, and why a plan answers as if it had run. An extension
# not listed here stops the server at start-up: a plan would silently skip it.
COVERED_EXTENSIONS: dict[type[SchemaExtension], str] = {
    CodedInputErrors: "plans validate with the same rules",
    MaxTokensLimiter: "plans parse with the same token limit (or a lower one)",
    OperationLabel: "plans carry the same metric label",
    ParsedDocuments: "a cache: plans are compiled once per document",
    ValidatedDocuments: "plans validate with validate_document: the same pre-pass and rules",
    StreamErrorCodes: "subscriptions only: plans answer queries and mutations",
}


class _Unknown(Enum):
    DOCUMENT = "not compiled yet"


class FastPaths:
    """Plans by document text and operation name, compiled once (within PLAN_CACHE_BYTES,
    least recently used out; a document without a plan is remembered as None)."""

    def __init__(
        self,
        schema: GraphQLSchema,
        roots: dict[tuple[str, str], tuple[Callable[..., object], tuple[str, ...]]],
        *,
        rules: Sequence[type[ASTValidationRule]],
        max_tokens: int,
        extensions: Sequence[SchemaExtension],
        max_bytes: int,
    ) -> None:
        """``rules``, ``max_tokens`` and ``extensions``: the executor's own, so no limit is
        bypassed here; UncoveredExtension when an extension would not run on hot documents.
        ``max_bytes``: what the plans may hold (PLAN_CACHE_BYTES)."""
        kinds = {type(extension) for extension in extensions}
        uncovered = sorted(kind.__name__ for kind in kinds - COVERED_EXTENSIONS.keys())
        if uncovered:
            raise UncoveredExtension(
                f"the fast path would skip the schema extension(s) {', '.join(uncovered)}: "
                "make plans do what they do and list them in COVERED_EXTENSIONS "
                "(gql/fastpath/plans.py), or serve without the fast path"
            )
        self.schema = schema
        self.roots = roots
        self.rules = rules
        self.max_tokens = min(max_tokens, MAX_PLAN_TOKENS)
        self.plans: ByteLRU[tuple[str, str | None], Plan | None] = ByteLRU(max_bytes)
        self.answered = 0  # requests answered here (diagnostics and tests)

    @staticmethod
    def may_plan(query: object, operation_name: object) -> bool:
        """Cheap checks before any parsing: the shape of a hot request."""
        if not isinstance(query, str) or len(query) > MAX_DOCUMENT_LENGTH:
            return False
        return operation_name is None or (
            isinstance(operation_name, str) and len(operation_name) <= MAX_OPERATION_NAME_LENGTH
        )

    def compiled(self, query: str, operation_name: str | None) -> Plan | None:
        """The plan of a document compiled already, without compiling it."""
        return self.plans.get((query, operation_name))

    def plan_for(self, query: str, operation_name: str | None) -> Plan | None:
        """The plan of a document (compiled on first sight, in the caller's thread), or None."""
        key = (query, operation_name)
        known = self.plans.get(key, _Unknown.DOCUMENT)
        if known is not _Unknown.DOCUMENT:
            return known
        plan = self._compile(query, operation_name)
        self.plans.put(key, plan, plan.held_bytes if plan is not None else 0)
        return plan

    def _compile(self, query: str, operation_name: str | None) -> Plan | None:
        try:
            document = parse(query, no_location=True, max_tokens=self.max_tokens)
        except GraphQLError:
            return None
        if validate_document(self.schema, document, self.rules):
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
        function, names = root
        given = [a.name.value for a in field.arguments or ()]
        if any(name not in names for name in given):
            return None  # only the root's own arguments
        output = definition.type
        nullable = not isinstance(output, GraphQLNonNull)
        object_type = output.of_type if isinstance(output, GraphQLNonNull) else output
        if not isinstance(object_type, GraphQLObjectType) or field.selection_set is None:
            return None
        # A mutation has run once its root returns: nothing after it may fall back to the
        # generic path (which would run it again), so its plan calls no resolver fields.
        selections = _selections(object_type, field.selection_set, resolvers=kind == "query")
        if selections is None:
            return None
        key = field.alias.value if field.alias else field.name.value
        location, held_bytes = _located(query, operation_name)
        return Plan(
            function,
            names,
            definition,
            field,
            tuple(operation.variable_definitions or ()),
            self.schema,
            key,
            nullable,
            selections,
            location,
            kind == "mutation",
            operation_label(document, operation_name),
            operation.name.value if operation.name else None,
            held_bytes,
        )


def _located(query: str, operation_name: str | None) -> tuple[dict[str, int], int]:
    """Where the root field starts, as the executor reports it (plans parse without locations,
    so this parses the valid document once more, once per document), and what a plan of it
    holds at most: the document with locations (its nodes, the text)."""
    document = parse(query)
    operation = _single_operation(document, operation_name)
    assert operation is not None
    field = operation.selection_set.selections[0]
    assert field.loc is not None
    where = get_location(field.loc.source, field.loc.start)
    return {"line": where.line, "column": where.column}, document_bytes(query, document)


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


def _selections(
    object_type: GraphQLObjectType, selection_set: SelectionSetNode, *, resolvers: bool
) -> tuple[Selection, ...] | None:
    """The plan of a selection set over plain attributes, or None when it needs the executor."""
    planned: list[Selection] = []
    keys: set[str] = set()
    for node in selection_set.selections:
        if not isinstance(node, FieldNode) or node.directives:
            return None
        name = node.name.value
        key = node.alias.value if node.alias else name
        if key in keys:
            return None  # the executor merges repeated keys; the executor answers those
        keys.add(key)
        if name == "__typename":
            if node.arguments:
                return None
            planned.append(Selection(key, None, object_type.name, None, False, None))
            continue
        field = object_type.fields.get(name)
        if field is None:
            return None
        resolver, python_names = (
            _allowed_resolver(object_type, name, field) if resolvers else (None, None)
        )
        attribute = _plain_attribute(field) if resolver is None else name
        if attribute is None or (node.arguments and resolver is None):
            return None
        unwrapped = _unwrap(field.type)
        if unwrapped is None:
            return None
        named, nullable, is_list = unwrapped
        extra: dict[str, Any] = {
            "is_list": is_list,
            "resolver": resolver,
            "field": field if resolver is not None else None,
            "node": node if resolver is not None else None,
            "python_names": python_names,
        }
        if isinstance(named, GraphQLScalarType | GraphQLEnumType) and node.selection_set is None:
            planned.append(
                Selection(key, attribute, None, named.serialize, nullable, None, **extra)
            )
        elif isinstance(named, GraphQLObjectType) and node.selection_set is not None:
            children = _selections(named, node.selection_set, resolvers=resolvers)
            if children is None:
                return None
            planned.append(Selection(key, attribute, None, None, nullable, children, **extra))
        else:
            return None  # interfaces, unions: the executor
    return tuple(planned)


def _unwrap(output: Any) -> tuple[Any, bool, bool] | None:
    """(named type, nullable, is a list) of a field's type; None for shapes left to the executor."""
    nullable = not isinstance(output, GraphQLNonNull)
    named = output.of_type if isinstance(output, GraphQLNonNull) else output
    if not isinstance(named, GraphQLList):
        return named, nullable, False
    item = named.of_type
    if not isinstance(item, GraphQLNonNull) or not isinstance(item.of_type, GraphQLObjectType):
        return None  # lists of scalars or of nullable items
    return item.of_type, nullable, True


# Resolver fields the fast path may call, by (type, field): synchronous, no `info`, reading
# only their object and arguments (the executor runs the same function in the same thread).
FAST_RESOLVERS = frozenset({("Conversation", "messages")})


def _allowed_resolver(
    object_type: GraphQLObjectType, name: str, field: GraphQLField
) -> tuple[Callable[..., Any] | None, dict[str, str] | None]:
    if (object_type.name, name) not in FAST_RESOLVERS:
        return None, None
    definition = (field.extensions or {}).get("strawberry-definition")
    if definition is None or definition.base_resolver is None:
        return None, None
    if definition.permission_classes or definition.extensions or definition.directives:
        return None, None
    names = {a.graphql_name or a.python_name: a.python_name for a in definition.arguments}
    return definition.base_resolver.wrapped_func, names


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
