"""Generated documents over the fast roots get the same answer from both paths.

Hypothesis builds documents the way clients write them and the ways they go wrong: aliases,
``__typename``, nested profiles, a page of messages, fragments (spread and inline), unknown
fields, literal and variable arguments, variables that do and do not coerce, and callers of
every role. Each goes to an app with the fast path and to one without, on the same database;
both must answer the same status, content type and JSON (request ids aside). The number of
examples is bounded so the suite stays quick.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import Pair, answered, same, service_token, user_token
from tests.factories import first_contact, make_admin, make_user

EXAMPLES = 60  # per backend


@dataclass(frozen=True)
class People:
    customer: str
    conversation: str
    admin: str


def aliased(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from(["", "", "a: ", "b: "]).map(lambda alias: f"{alias}{name}")


def selection(
    fields: st.SearchStrategy[str], odd: list[str], *, max_size: int = 4
) -> st.SearchStrategy[str]:
    """A selection set of 1 to ``max_size`` of ``fields``, distinct response keys mostly; one
    time in four with an ``odd`` one too (repeated, unknown, a fragment) for the executor."""

    def key(field: str) -> str:
        return field.split(":", maxsplit=1)[0].split(" ", maxsplit=1)[0].split("(", maxsplit=1)[0]

    chosen = st.lists(fields, min_size=1, max_size=max_size, unique_by=key)
    extra = st.one_of(st.just(""), st.just(""), st.just(""), st.sampled_from(odd))
    return st.tuples(chosen, extra).map(
        lambda parts: "{ " + " ".join([*parts[0], parts[1]]).strip() + " }"
    )


ODD = ["nope", "id", "... on Conversation { id }", "...Ids"]
PLAIN = st.sampled_from(["id", "name", "avatarUrl", "isAdmin", "isOnline", "__typename"])
PROFILE = selection(PLAIN.flatmap(aliased), ["nope", "name"])
FIRST = st.sampled_from(["1", "2", "2", "0", "101", "$n"])
MESSAGES = FIRST.flatmap(
    lambda first: selection(
        st.sampled_from(
            ["edges { cursor node { id content sender { id name } } }", "pageInfo { hasNextPage }"]
        ),
        ["nope"],
    ).map(lambda inner: f"messages(first: {first}) {inner}")
)


def conversation_fields(*, read: bool) -> st.SearchStrategy[str]:
    plain = st.sampled_from(
        [
            "id",
            "createdAt",
            "updatedAt",
            "lastMessageAt",
            "__typename",
            "status",  # an enum: rendered by the schema's own serializer on both paths
            "snoozedUntil",
            "resolvedAt",
            "waitingSince",
        ]
    )
    profiles = st.sampled_from(["customer", "admin"]).flatmap(
        lambda name: PROFILE.map(lambda inner: f"{name} {inner}")
    )
    fields = [plain.flatmap(aliased), profiles]
    if read:  # a mutation's plan calls no resolver fields: pages only in reads
        fields.append(MESSAGES)
    return selection(st.one_of(*fields), ODD)


ARGUMENT = st.sampled_from(["", "literal", "$c", "$c", "bad literal"])


@st.composite
def documents(draw: Any, people: People) -> tuple[str, dict[str, Any]]:
    """(document, variables) over one of the fast roots."""
    root, argument_name, read = draw(
        st.sampled_from(
            [
                ("query", "adminConversation", True),
                ("mutation", "adminConversation", False),
                ("query", "conversation", True),
            ]
        )
    )
    is_conversation = argument_name == "conversation"
    argument = draw(ARGUMENT if not is_conversation else st.sampled_from(["literal", "$c"]))
    known = people.conversation if is_conversation else people.customer
    target = draw(st.sampled_from([known, known, str(uuid4())]))
    arg_name = "id" if is_conversation else "customerId"
    argument_text = {
        "": "",
        "literal": f'({arg_name}: "{target}")',
        "bad literal": f'({arg_name}: "nope")',
        "$c": f"({arg_name}: $c)",
    }[argument]
    inner = draw(conversation_fields(read=read))
    if root == "mutation":
        inner = draw(
            selection(
                st.one_of(
                    st.sampled_from(["created", "profileCreated", "__typename"]).flatmap(aliased),
                    st.just(f"conversation {inner}"),
                ),
                ["nope", "created"],
            )
        )
    field = f"{draw(aliased(argument_name))}{argument_text} {inner}"
    declared = []
    variables: dict[str, Any] = {}
    if argument == "$c":
        declared.append("$c: " + draw(st.sampled_from(["UUID", "UUID!"])))
        value = draw(st.sampled_from([target, target, target, "nope", 5, None, "missing"]))
        if value != "missing":
            variables["c"] = value
    if "$n" in field:
        declared.append("$n: Int!")
        variables["n"] = draw(st.sampled_from([1, 3, 3, 0, "x"]))
    header = f"{root}({', '.join(declared)})" if declared else root
    document = f"{header} {{ {field} }}"
    if "...Ids" in document:
        document += " fragment Ids on Conversation { id lastMessageAt }"
    return document, variables


def cast_of_callers() -> tuple[People, dict[str, str]]:
    """An admin, a customer with a conversation, and a token for each kind of caller."""
    admin = make_admin("Ada Admin")
    customer = make_user(full_name="Cleo Customer")
    conversation = str(first_contact(customer).conversation.id)
    stranger = make_user()
    first_contact(stranger)  # a mutation of their own finds it: both paths answer alike
    tokens = {
        "customer": user_token(customer),
        "admin": user_token(admin),
        "service": service_token(),
        "stranger": user_token(stranger),
    }
    return People(str(customer), conversation, str(admin)), tokens


def answered_alike_on_both_paths(
    pair: Pair, generated: st.SearchStrategy[tuple[str, dict[str, Any]]], tokens: dict[str, str]
) -> None:
    """Each generated (document, variables), from a caller drawn from ``tokens``, gets the same
    answer from both paths; a good share is the fast path's (two paths were compared)."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(generated, st.sampled_from(sorted(tokens)))
    def answered_alike(document: tuple[str, dict[str, Any]], caller: str) -> None:
        query, variables = document
        same(*pair.both(query, tokens[caller], variables))

    before = answered(pair.fast)
    answered_alike()
    # the fast path answered a good share (29 of 60 when written), so two paths were compared
    assert answered(pair.fast) - before >= EXAMPLES // 4


def test_generated_documents_read_the_same_on_both_paths(pair: Pair) -> None:
    people, tokens = cast_of_callers()
    answered_alike_on_both_paths(pair, documents(people), tokens)


@pytest.mark.parametrize("caller", ["customer", "service"])
def test_the_generator_reaches_the_fast_path(pair: Pair, caller: str) -> None:
    """A sample the generator can make is one the fast path answers (so the property above
    compares two paths, not the executor with itself)."""
    customer = make_user()
    make_admin()
    first_contact(customer)
    token = user_token(customer) if caller == "customer" else service_token()
    query = (
        "mutation ($c: UUID!) { a: adminConversation(customerId: $c) "
        "{ created conversation { id admin { name __typename } } } }"
    )
    before = pair.fast.app.state.fast_paths.answered  # type: ignore[attr-defined]

    same(*pair.both(query, token, {"c": str(customer)}))

    assert pair.fast.app.state.fast_paths.answered == before + 1  # type: ignore[attr-defined]


MESSAGE_FIELDS = selection(
    st.one_of(
        st.sampled_from(["id", "content", "createdAt", "clientMessageId", "__typename"]).flatmap(
            aliased
        ),
        PROFILE.map(lambda inner: f"sender {inner}"),
        st.just("sender { assignedConversationCount }"),  # a resolver field: the executor's
    ),
    ["nope", "id"],
)
CONTENT = st.sampled_from(["hello", " hello\n", "<b>x</b> & \u202e", "", "\u200b", "x" * 4001])


@st.composite
def sends(draw: Any, people: People) -> tuple[str, dict[str, Any]]:
    """(document, variables): a sendMessage, always with a new clientMessageId, so the second
    path's send is the retry of the first's and both must give the stored message."""
    conversation = draw(st.sampled_from([people.conversation] * 3 + [str(uuid4()), "nope"]))
    key = str(draw(st.uuids()))
    content = draw(CONTENT)
    as_variables = draw(st.sampled_from(["none", "all", "some"]))
    declared, variables, arguments = [], {}, []
    for name, graphql_type, value in (
        ("conversationId", "UUID!", conversation),
        ("content", "String!", content),
        ("clientMessageId", "String", key),
    ):
        if as_variables == "all" or (as_variables == "some" and name != "content"):
            declared.append(f"${name}: {graphql_type}")
            variables[name] = value
            arguments.append(f"{name}: ${name}")
        else:
            arguments.append(f"{name}: {json.dumps(value)}")
    header = f"mutation({', '.join(declared)})" if declared else "mutation"
    field = f"{draw(aliased('sendMessage'))}({', '.join(arguments)}) {draw(MESSAGE_FIELDS)}"
    return f"{header} {{ {field} }}", variables


def test_generated_sends_answer_the_same_on_both_paths(pair: Pair) -> None:
    people, tokens = cast_of_callers()
    answered_alike_on_both_paths(pair, sends(people), tokens)


ORIGINS = st.sampled_from([None, "https://app.example", "https://evil.example"])
# How the document travels: as text; as text with its persisted-query hash (learned once it
# validates), then by the hash alone; by a hash nobody sent; with an unsupported version.
ENVELOPES = st.sampled_from(["text", "persisted", "persisted", "unknown hash", "bad version"])


def persisted(query: str, *, version: int = 1, digest: str | None = None) -> dict[str, Any]:
    sha = digest or hashlib.sha256(query.encode()).hexdigest()
    return {"persistedQuery": {"version": version, "sha256Hash": sha}}


def test_generated_requests_read_the_same_on_both_paths_whatever_their_envelope(
    cors_pair: Pair,
) -> None:
    """Persisted queries and browsers' Origin headers: what the pipeline reads before either
    executor runs is read alike (status, headers CORS included, body), and the hash a
    document was learned under names it on both paths afterwards."""
    people, tokens = cast_of_callers()

    @settings(
        max_examples=EXAMPLES // 2,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(documents(people), st.sampled_from(sorted(tokens)), ENVELOPES, ORIGINS)
    def answered_alike(
        document: tuple[str, dict[str, Any]], caller: str, envelope: str, origin: str | None
    ) -> None:
        query, variables = document
        token = tokens[caller]
        headers = {"origin": origin} if origin else {}
        if envelope == "text":
            same(*cors_pair.both(query, token, variables, headers=headers))
        elif envelope == "persisted":
            extensions = persisted(query)
            same(*cors_pair.both(query, token, variables, headers=headers, extensions=extensions))
            same(*cors_pair.both(None, token, variables, headers=headers, extensions=extensions))
        elif envelope == "unknown hash":
            extensions = persisted(query, digest=hashlib.sha256(uuid4().bytes).hexdigest())
            body = same(*cors_pair.both(None, token, variables, extensions=extensions))
            assert body["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
        else:
            extensions = persisted(query, version=2)
            body = same(*cors_pair.both(query, token, variables, extensions=extensions))
            assert body["errors"][0]["extensions"]["code"] == "BAD_REQUEST"

    before = answered(cors_pair.fast)
    answered_alike()
    assert answered(cors_pair.fast) - before >= EXAMPLES // 8  # two paths were compared
