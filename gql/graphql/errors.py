"""Errors are mapped once, here: repository errors to codes, everything unexpected masked."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import strawberry
from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLSyntaxError,
    ValuesOfCorrectTypeRule,
)
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext, ExecutionResult

from gql.caching.lru import ByteLRU
from gql.observability.metrics import FOREIGN_KEY_VIOLATIONS
from repo.errors import (
    ClientMessageIdReused,
    ConversationNotFound,
    CustomerNotFound,
    DatabaseUnavailable,
    HelplineError,
    IntegrityViolation,
    InvalidInput,
    NoAdminAvailable,
    RateLimited,
)

log = logging.getLogger("helpline.errors")

BAD_USER_INPUT = "BAD_USER_INPUT"
UNAUTHENTICATED = "UNAUTHENTICATED"
BAD_REQUEST = "BAD_REQUEST"
INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
RATE_LIMITED = "RATE_LIMITED"
RETRY_AFTER_S = 1  # what a client answered SERVICE_UNAVAILABLE (HTTP 503) should wait
MASKED_MESSAGE = "Internal server error"

CODES: dict[type[HelplineError], str] = {
    InvalidInput: BAD_USER_INPUT,
    CustomerNotFound: "CUSTOMER_NOT_FOUND",
    NoAdminAvailable: "NO_ADMIN_AVAILABLE",
    ConversationNotFound: "NOT_FOUND",
    ClientMessageIdReused: "CLIENT_MESSAGE_ID_REUSED",
    DatabaseUnavailable: SERVICE_UNAVAILABLE,
    RateLimited: RATE_LIMITED,
}


class ApiError(Exception):
    """A refusal decided by the API layer itself (authentication, authorization, arguments)."""

    code = BAD_USER_INPUT


class BadUserInput(ApiError):
    code = BAD_USER_INPUT


class Unauthenticated(ApiError):
    code = UNAUTHENTICATED


class Forbidden(ApiError):
    code = "FORBIDDEN"


# graphql-core's messages for variable values that do not fit their type (not validation).
_VARIABLE_COERCION = re.compile(
    r"Variable '\$\w+' (has invalid value|got invalid value|of required type .* was not provided"
    r"|of non-null type .* must not be null)"
)
MAX_MESSAGE_CHARS = 500


@dataclass(frozen=True, slots=True)
class Classified:
    code: str
    masked: bool


def classify(error: GraphQLError) -> Classified:
    """Decide an error's ``extensions.code`` and whether its message must be hidden."""
    original = error.original_error
    if isinstance(original, ApiError):
        return Classified(original.code, masked=False)
    if isinstance(original, HelplineError):
        for error_type, code in CODES.items():
            if isinstance(original, error_type):
                return Classified(code, masked=False)
        return Classified(INTERNAL_SERVER_ERROR, masked=True)
    if error.path is not None:
        # Raised while resolving a field, and not one of ours: a bug or an outage.
        return Classified(INTERNAL_SERVER_ERROR, masked=True)
    # Before execution: the request itself is wrong (parse, validation, variables).
    if isinstance(error, GraphQLSyntaxError):
        return Classified("GRAPHQL_PARSE_FAILED", masked=False)
    if error.extensions and "code" in error.extensions:
        return Classified(str(error.extensions["code"]), masked=False)
    if original is None:
        if _VARIABLE_COERCION.match(error.message):
            return Classified(BAD_USER_INPUT, masked=False)
        return Classified("GRAPHQL_VALIDATION_FAILED", masked=False)
    if isinstance(original, (ValueError, TypeError, GraphQLError)):
        # A scalar (UUID, DateTime, Int...) refused the value given for it.
        return Classified(BAD_USER_INPUT, masked=False)
    return Classified(INTERNAL_SERVER_ERROR, masked=True)


class _CodedValuesOfCorrectTypeRule(ValuesOfCorrectTypeRule):
    """A literal of the wrong type (a malformed UUID, say) is the user's input error."""

    def report_error(self, error: GraphQLError) -> None:
        error.extensions = {**(error.extensions or {}), "code": BAD_USER_INPUT}
        super().report_error(error)


def coded_rules(rules: Iterable[type[ASTValidationRule]]) -> tuple[type[ASTValidationRule], ...]:
    """``rules`` with literal input errors coded BAD_USER_INPUT."""
    return tuple(
        _CodedValuesOfCorrectTypeRule if rule is ValuesOfCorrectTypeRule else rule for rule in rules
    )


class CodedInputErrors(SchemaExtension):
    """Validate with a fixed tuple of rules (build it once: ValidatedDocuments keys on it)."""

    def __init__(self, rules: tuple[type[ASTValidationRule], ...]) -> None:
        self.rules = rules

    def on_operation(self) -> Iterator[None]:
        self.execution_context.validation_rules = self.rules
        yield


def request_id_of(execution_context: ExecutionContext | None) -> str | None:
    context = getattr(execution_context, "context", None)
    return context.get("request_id") if isinstance(context, dict) else None


def add_codes(result: ExecutionResult, request_id: str | None) -> ExecutionResult:
    """Give every error an ``extensions.code``; replace unexpected ones by a masked error."""
    if result.errors:
        result.errors = coded_errors(result.errors, request_id)
    return result


def coded_errors(errors: Iterable[GraphQLError], request_id: str | None) -> list[GraphQLError]:
    """The errors, each with an ``extensions.code``; unexpected ones masked."""
    return [_with_code(error, request_id) for error in errors]


def _with_code(error: GraphQLError, request_id: str | None) -> GraphQLError:
    classified = classify(error)
    extensions: dict[str, Any] = {**(error.extensions or {}), "code": classified.code}
    if isinstance(error.original_error, RateLimited):  # as the 429's Retry-After says it
        extensions["retryAfterSeconds"] = error.original_error.retry_after_s
    if classified.masked and request_id:
        extensions["requestId"] = request_id
    message = error.message
    if len(message) > MAX_MESSAGE_CHARS:  # coercion errors echo the value, however large
        message = message[:MAX_MESSAGE_CHARS] + "…"
    return GraphQLError(
        MASKED_MESSAGE if classified.masked else message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions=extensions,
    )


FOREIGN_KEY_SQLSTATES = ("23503", "SQLITE_CONSTRAINT_FOREIGNKEY")


def count_foreign_key_violation(original: BaseException | None) -> None:
    if isinstance(original, IntegrityViolation) and original.sqlstate in FOREIGN_KEY_SQLSTATES:
        FOREIGN_KEY_VIOLATIONS.labels(original.constraint or "unknown").inc()


class StreamErrorCodes(SchemaExtension):
    """Codes and masks errors of results streamed over WebSocket (HTTP results: the view)."""

    def on_stream_result(self, result: Any) -> Iterator[None]:
        if getattr(result, "errors", None):
            result.errors = [
                _with_code(e, request_id_of(self.execution_context)) for e in result.errors
            ]
        yield


class HelplineSchema(strawberry.Schema):
    """Logs unexpected errors with their traceback and request id; expected ones quietly.

    ``rules``, ``parsed_documents``, ``validated_documents``: the executor's validation rules
    and caches (gql/graphql/caches.py), which the WebSocket's subscription gate shares."""

    rules: tuple[type[ASTValidationRule], ...]
    parsed_documents: ByteLRU[str, DocumentNode]
    validated_documents: ByteLRU[tuple[str, tuple[type[ASTValidationRule], ...]], bool]

    @staticmethod
    def remove_field_suggestion(error: GraphQLError) -> None:
        """With suggestions disabled, cut every "Did you mean ...?" (args, types, enums too)."""
        if "Did you mean" in error.message:
            error.message = error.message.split("Did you mean")[0].strip()

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        request_id = request_id_of(execution_context)
        for error in errors:
            report_error(error, request_id)


def report_error(error: GraphQLError, request_id: str | None) -> None:
    """Log an error as the server does for every response: unexpected ones with traceback."""
    classified = classify(error)
    count_foreign_key_violation(error.original_error)
    if classified.masked:
        original = error.original_error
        log.error(
            "unexpected error (request %s, path %s): %s",
            request_id,
            error.path,
            error.message,
            exc_info=(type(original), original, original.__traceback__)
            if original is not None
            else None,
        )
    else:  # the message can echo the client's values: log where, not what
        log.info("%s (request %s) at %s", classified.code, request_id, error.path)


def root_field_error(
    exc: Exception, *, key: str, location: dict[str, int], request_id: str | None
) -> dict[str, Any]:
    """The error the executor answers when a root field's resolver raised ``exc``: reported,
    coded and masked the same way (gql/fastpath/plans.py answers its roots' failures with it)."""
    error = GraphQLError(str(exc), path=[key], original_error=exc)
    report_error(error, request_id)
    coded = _with_code(error, request_id)
    return {
        "message": coded.message,
        "locations": [location],
        "path": [key],
        "extensions": coded.extensions,
    }
