"""Who may do what, over HTTP: every operation against every kind of caller and bad token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.testclient import TestClient

from gql.auth.tokens import AUTHENTICATED, SERVICE_ROLE
from gql.http.app import create_app
from gql.http.settings import Settings
from gql.ops.tokens import mint
from tests.conftest import TEST_JWT_SECRET
from tests.e2e.conftest import GraphQLClient, service_token, user_token
from tests.factories import count_rows, first_contact, make_admin, make_legacy_user, make_user

RSA_KID, EC_KID = "test-rsa", "test-ec"


@dataclass(frozen=True)
class Keys:
    rsa_private: rsa.RSAPrivateKey
    ec_private: ec.EllipticCurvePrivateKey
    jwks_path: Path

    @property
    def rsa_public_pem(self) -> bytes:
        return self.rsa_private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    rsa_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_private = ec.generate_private_key(ec.SECP256R1())
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_private.public_key()))
    ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_private.public_key()))
    jwks = {
        "keys": [
            rsa_jwk | {"kid": RSA_KID, "use": "sig", "alg": "RS256"},
            ec_jwk | {"kid": EC_KID, "use": "sig", "alg": "ES256"},
        ]
    }
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps(jwks))
    return Keys(rsa_private, ec_private, path)


@pytest.fixture
def app_client(db: Settings, keys: Keys) -> Iterator[GraphQLClient]:
    settings = Settings.of(
        database_url=db.database.database_url,
        welcome_message=db.graphql.welcome_message,
        jwt_secret=TEST_JWT_SECRET,
        jwt_jwks=str(keys.jwks_path),
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as http:
        yield GraphQLClient(http, None)


def claims_for(sub: UUID, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"role": AUTHENTICATED, "sub": str(sub), "aud": AUTHENTICATED, "exp": now + 600} | extra


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(claims: dict[str, Any]) -> str:
    """alg: none, as an attacker would send it."""
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(claims).encode())}."


def hs256_signed_with(key: bytes, claims: dict[str, Any], kid: str) -> str:
    """The algorithm-confusion attack: HS256 keyed with the server's public key."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(key, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


@dataclass
class World:
    admin: UUID
    customer: UUID
    other: UUID
    conversation: UUID
    keys: Keys

    def token(self, caller: str) -> str | None:
        me = claims_for(self.customer)
        makers: dict[str, Callable[[], str | None]] = {
            "anonymous": lambda: None,
            "customer": lambda: user_token(self.customer),
            "customer-rs256": lambda: jwt.encode(
                me, self.keys.rsa_private, algorithm="RS256", headers={"kid": RSA_KID}
            ),
            "customer-es256": lambda: jwt.encode(
                me, self.keys.ec_private, algorithm="ES256", headers={"kid": EC_KID}
            ),
            "other-customer": lambda: user_token(self.other),
            "admin": lambda: user_token(self.admin),
            "service": service_token,
            "expired": lambda: user_token(self.customer, expires_in=-120),
            "wrong-signature": lambda: mint(
                "another-secret-" + "y" * 40, role=AUTHENTICATED, sub=self.customer
            ),
            "alg-none": lambda: unsigned_token(me),
            "wrong-audience": lambda: user_token(self.customer, audience="someone-else"),
            "hs256-public-key": lambda: hs256_signed_with(self.keys.rsa_public_pem, me, RSA_KID),
        }
        return makers[caller]()


@pytest.fixture
def world(db: Settings, keys: Keys) -> World:
    admin = make_admin()
    customer, other = make_user(full_name="Cleo Customer"), make_user(full_name="Otto Other")
    conversation = first_contact(customer).conversation.id
    first_contact(other)
    return World(admin, customer, other, conversation, keys)


OPERATIONS: dict[str, str] = {
    "read own": "{ adminConversation { id } }",
    "read customer's": "query ($c: UUID!) { adminConversation(customerId: $c) { id } }",
    "read by id": "query ($id: UUID!) { conversation(id: $id) { messages { edges { cursor } } } }",
    "open own": "mutation { adminConversation { created } }",
    "open customer's": "mutation ($c: UUID!) { adminConversation(customerId: $c) { created } }",
    "send": 'mutation ($id: UUID!) { sendMessage(conversationId: $id, content: "hi") { id } }',
    "integrity": "{ integrity { orphanedConversationCount } }",
    "repair dry run": "mutation { repairOrphanedConversations { dryRun } }",
    "repair apply": "mutation { repairOrphanedConversations(dryRun: false) { dryRun } }",
    "assign": "mutation ($id: UUID!, $a: UUID!) "
    "{ assignConversation(conversationId: $id, adminId: $a) { id } }",
    "own queue": "{ inbox(first: 5, assignedToMe: true) { pageInfo { hasNextPage } } }",
}
OK, FORBIDDEN, BAD_INPUT, UNAUTH = "ok", "FORBIDDEN", "BAD_USER_INPUT", "UNAUTHENTICATED"
CUSTOMER_ROW = [OK, OK, OK, OK, OK, OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN]
EXPECTED: dict[str, list[str]] = {
    "anonymous": [UNAUTH] * 11,
    "customer": CUSTOMER_ROW,
    "customer-rs256": CUSTOMER_ROW,
    "customer-es256": CUSTOMER_ROW,
    "other-customer": [
        OK,
        FORBIDDEN,
        FORBIDDEN,
        OK,
        FORBIDDEN,
        FORBIDDEN,
        FORBIDDEN,
        FORBIDDEN,
        FORBIDDEN,
        FORBIDDEN,
        FORBIDDEN,
    ],
    "admin": [BAD_INPUT, OK, OK, BAD_INPUT, OK, OK, OK, OK, FORBIDDEN, OK, OK],
    "service": [BAD_INPUT, OK, OK, BAD_INPUT, OK, OK, OK, OK, OK, OK, BAD_INPUT],
    "expired": [UNAUTH] * 11,
    "wrong-signature": [UNAUTH] * 11,
    "alg-none": [UNAUTH] * 11,
    "wrong-audience": [UNAUTH] * 11,
    "hs256-public-key": [UNAUTH] * 11,
}
CASES = [
    pytest.param(caller, operation, outcome, id=f"{caller}/{operation}")
    for caller, outcomes in EXPECTED.items()
    for operation, outcome in zip(OPERATIONS, outcomes, strict=True)
]


@pytest.mark.parametrize(("caller", "operation", "expected"), CASES)
def test_the_roles_table(
    app_client: GraphQLClient, world: World, caller: str, operation: str, expected: str
) -> None:
    token = world.token(caller)
    variables = {"c": str(world.customer), "id": str(world.conversation), "a": str(world.admin)}
    query = OPERATIONS[operation]
    used = {k: v for k, v in variables.items() if f"${k}" in query}

    response = app_client.as_(token).request(query, **used)

    body = response.json()
    if expected == OK:
        assert response.status_code == 200 and "errors" not in body, body
        return
    codes = [e["extensions"]["code"] for e in body["errors"]]
    assert codes == [expected], body
    assert response.status_code == (401 if expected == UNAUTH else 200)
    if token:
        assert token not in response.text


def test_bad_tokens_are_told_apart_without_echoing_the_token(
    app_client: GraphQLClient, world: World
) -> None:
    reasons = {}
    for caller in ["expired", "wrong-signature", "alg-none", "wrong-audience", "hs256-public-key"]:
        response = app_client.as_(world.token(caller)).request(OPERATIONS["read own"])
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        reasons[caller] = response.json()["errors"][0]["message"]
    assert reasons == {
        "expired": "token expired",
        "wrong-signature": "bad signature",
        "alg-none": "unsupported algorithm 'none'",
        "wrong-audience": "wrong audience",
        "hs256-public-key": "bad signature",
    }


def test_a_customer_learns_nothing_about_other_ids(app_client: GraphQLClient, world: World) -> None:
    customer = app_client.as_(world.token("customer"))
    other_conversation = customer.as_(world.token("other-customer"))
    for query, variables in [
        (OPERATIONS["read by id"], {"id": str(uuid4())}),
        (OPERATIONS["send"], {"id": str(uuid4())}),
        (OPERATIONS["read customer's"], {"c": str(uuid4())}),
    ]:
        missing = other_conversation.error(query, **variables)
        existing = other_conversation.error(
            query,
            **{k: str(world.conversation if k == "id" else world.customer) for k in variables},
        )
        assert missing == existing | {"path": missing["path"]} or (
            missing["extensions"] == existing["extensions"] == {"code": FORBIDDEN}
        )
        assert missing["message"] == existing["message"]
    assert customer.data(OPERATIONS["read own"])["adminConversation"]["id"] == str(
        world.conversation
    )


def test_the_sender_is_the_caller(app_client: GraphQLClient, world: World) -> None:
    send = (
        'mutation ($id: UUID!) { sendMessage(conversationId: $id, content: "hi") '
        "{ sender { id } } }"
    )
    senders = {
        caller: app_client.as_(world.token(caller)).data(send, id=str(world.conversation))[
            "sendMessage"
        ]["sender"]["id"]
        for caller in ["customer", "admin", "service"]
    }
    assert senders == {
        "customer": str(world.customer),
        "admin": str(world.admin),
        "service": str(world.admin),
    }


def test_a_new_sign_up_can_chat_at_once(app_client: GraphQLClient, world: World) -> None:
    newcomer = uuid4()
    token = user_token(newcomer, email="new@example.com", full_name="Nia Newcomer")

    payload = app_client.as_(token).data(
        "mutation { adminConversation { created profileCreated "
        "conversation { customer { name } } } }"
    )["adminConversation"]

    assert payload == {
        "created": True,
        "profileCreated": True,
        "conversation": {"customer": {"name": "Nia Newcomer"}},
    }
    assert count_rows("users") == 4


def test_a_customer_without_a_profile_still_gets_their_conversation(
    app_client: GraphQLClient, world: World
) -> None:
    legacy = make_legacy_user(full_name="Lee Legacy")

    payload = app_client.as_(user_token(legacy)).data(
        "mutation { adminConversation { created profileCreated } }"
    )["adminConversation"]

    assert payload == {"created": True, "profileCreated": True}


@pytest.mark.parametrize("role", ["supabase_admin", "postgres", "AUTHENTICATED"])
def test_an_unknown_role_is_forbidden(app_client: GraphQLClient, world: World, role: str) -> None:
    token = mint(TEST_JWT_SECRET, role=role)
    error = app_client.as_(token).error(OPERATIONS["integrity"])
    assert error["extensions"]["code"] == FORBIDDEN


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"role": SERVICE_ROLE}, "missing required claim 'exp'"),
        ({"exp": 4102444800}, "missing required claim 'role'"),
        (
            {"role": AUTHENTICATED, "exp": 4102444800, "aud": AUTHENTICATED},
            "missing required claim 'sub'",
        ),
        (
            {"role": AUTHENTICATED, "exp": 4102444800, "sub": str(uuid4())},
            "missing required claim 'aud'",
        ),
        (
            {"role": AUTHENTICATED, "exp": 4102444800, "sub": "42", "aud": AUTHENTICATED},
            "invalid token: claim 'sub' must be a UUID",
        ),
    ],
)
def test_tokens_missing_required_claims_are_unauthenticated(
    app_client: GraphQLClient, claims: dict[str, Any], reason: str
) -> None:
    token = jwt.encode(claims, TEST_JWT_SECRET, algorithm="HS256")
    response = app_client.as_(token).request(OPERATIONS["integrity"])
    assert response.status_code == 401
    assert response.json()["errors"][0] == {"message": reason, "extensions": {"code": UNAUTH}}


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer not.a.jwt"])
def test_malformed_authorization_headers_are_unauthenticated(
    app_client: GraphQLClient, header: str
) -> None:
    response = app_client.http.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"authorization": header}
    )
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == UNAUTH


def test_clock_skew_of_under_30_seconds_is_tolerated(
    app_client: GraphQLClient, world: World
) -> None:
    token = user_token(world.customer, expires_in=-20)
    assert app_client.as_(token).data(OPERATIONS["read own"])["adminConversation"] is not None


def test_anonymous_callers_may_introspect_outside_production(app_client: GraphQLClient) -> None:
    assert app_client.data("{ __schema { queryType { name } } }") == {
        "__schema": {"queryType": {"name": "Query"}}
    }


def test_any_admin_may_answer_a_conversation_assigned_to_another(
    app_client: GraphQLClient, world: World
) -> None:
    second_admin = make_admin("Bea Backup")
    send = (
        'mutation ($id: UUID!) { sendMessage(conversationId: $id, content: "covering") '
        "{ sender { id } } }"
    )
    sent = app_client.as_(user_token(second_admin)).data(send, id=str(world.conversation))
    assert sent["sendMessage"]["sender"]["id"] == str(second_admin)


def test_a_token_expired_beyond_the_leeway_is_refused(
    app_client: GraphQLClient, world: World
) -> None:
    response = app_client.as_(user_token(world.customer, expires_in=-40)).request(
        OPERATIONS["read own"]
    )
    assert response.status_code == 401
    assert response.json()["errors"][0]["message"] == "token expired"


@pytest.mark.parametrize(
    "header", [{"alg": "HS256", "kid": 123}, {"alg": "HS256", "crit": ["x"]}, {"alg": 7}]
)
def test_odd_token_headers_are_unauthenticated_not_500(
    app_client: GraphQLClient, world: World, header: dict[str, Any]
) -> None:
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(claims_for(world.customer)).encode())
    response = app_client.as_(f"{head}.{body}.c2lnbmF0dXJl").request(OPERATIONS["read own"])
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == UNAUTH


def test_odd_user_metadata_does_not_break_sign_up(app_client: GraphQLClient, world: World) -> None:
    token = jwt.encode(
        claims_for(uuid4(), email="odd@example.com", user_metadata=["not", "an", "object"]),
        TEST_JWT_SECRET,
        algorithm="HS256",
    )
    payload = app_client.as_(token).data("mutation { adminConversation { created } }")
    assert payload == {"adminConversation": {"created": True}}


def test_without_a_shared_secret_hs256_tokens_are_refused_even_keyed_with_the_public_key(
    db: Settings, keys: Keys, world: World
) -> None:
    settings = Settings.of(database_url=db.database.database_url, jwt_jwks=str(keys.jwks_path))
    with TestClient(create_app(settings), raise_server_exceptions=False) as http:
        client = GraphQLClient(http, world.token("hs256-public-key"))
        response = client.request(OPERATIONS["read own"])
        assert response.status_code == 401
        assert response.json()["errors"][0]["message"] == "HS256 tokens are not accepted here"
        rs256 = client.as_(world.token("customer-rs256")).data(OPERATIONS["read own"])
        assert rs256["adminConversation"]["id"] == str(world.conversation)
