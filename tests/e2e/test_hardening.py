"""A hostile client cannot knock the server over; the endpoint follows GraphQL-over-HTTP."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from gql.caching.lru import MAX_ENTRY_SHARE, ByteLRU
from gql.graphql.caches import ParsedDocuments, ValidatedDocuments
from gql.http.app import create_app
from gql.http.settings import Settings
from repo.config import ConfigError
from tests.e2e.conftest import GraphQLClient, Pair, service_token

GRAPHQL_RESPONSE = "application/graphql-response+json"
PING = "{ integrity { orphanedConversationCount } }"


def app_client(settings: Settings) -> Iterator[GraphQLClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as http:
        yield GraphQLClient(http, service_token())


@pytest.fixture
def production(db: Settings) -> Iterator[GraphQLClient]:
    yield from app_client(db.replaced(app_env="production", metrics_token="scrape-me"))


def still_serving(client: GraphQLClient) -> None:
    assert client.data(PING) == {"integrity": {"orphanedConversationCount": 0}}


def document_caches(client: GraphQLClient) -> tuple[ByteLRU[Any, Any], ByteLRU[Any, Any]]:
    """The app's parse and validation caches (its schema's ParsedDocuments and
    ValidatedDocuments share them)."""
    extensions = client.http.app.state.view.schema.get_extensions()  # type: ignore[attr-defined]
    parsed = next(e.cache for e in extensions if isinstance(e, ParsedDocuments))
    validated = next(e.cache for e in extensions if isinstance(e, ValidatedDocuments))
    return parsed, validated


def test_a_query_deeper_than_the_limit_is_refused(db: Settings) -> None:
    for client in app_client(db.replaced(max_query_depth=3)):
        query = (
            '{ conversation(id: "00000000-0000-4000-8000-000000000000") '
            "{ messages { edges { node { sender { name } } } } } }"
        )
        error = client.error(query)
        assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        assert "exceeds maximum operation depth of 3" in error["message"]
        still_serving(client)


def test_deeply_nested_introspection_is_refused(client: GraphQLClient) -> None:
    nested = "fields { type { " * 8 + "name" + " } }" * 8
    error = client.error("{ __schema { types { " + nested + " } } }")
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    still_serving(client)


def test_ten_thousand_nested_braces_fail_to_parse(client: GraphQLClient) -> None:
    error = client.error("{" * 10_000 + "}" * 10_000)
    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    still_serving(client)


def test_six_hundred_aliases_are_refused(client: GraphQLClient) -> None:
    query = "{ " + " ".join(f"a{i}: __typename" for i in range(600)) + " }"
    error = client.error(query)
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "600 aliases found. Allowed: 15" in error["message"]
    still_serving(client)


def test_a_document_with_too_many_tokens_is_refused(client: GraphQLClient) -> None:
    error = client.error("{ " + "__typename " * 3000 + "}")
    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert "more than 2000 tokens" in error["message"]
    still_serving(client)


def test_an_oversized_body_is_refused_with_413(client: GraphQLClient) -> None:
    padding = " " * (1024 * 1024)
    declared = client.http.post("/graphql", json={"query": PING + padding}, headers=client.headers)

    def chunks() -> Iterator[bytes]:
        yield b'{"query": "' + PING.encode() + b" "
        for _ in range(20):
            yield b" " * 65536
        yield b'"}'

    streamed = client.http.post(
        "/graphql",
        content=chunks(),
        headers=client.headers | {"content-type": "application/json"},
    )

    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    still_serving(client)


def test_batched_operations_are_refused(client: GraphQLClient) -> None:
    response = client.http.post(
        "/graphql", json=[{"query": PING}, {"query": PING}], headers=client.headers
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


def test_form_posts_are_refused_so_no_simple_cross_site_request_runs(client: GraphQLClient) -> None:
    response = client.http.post("/graphql", data={"query": PING}, headers=client.headers)
    assert response.status_code in (400, 415)
    assert "errors" in response.json()


def test_the_validation_cache_keeps_hitting_with_the_limits_on(client: GraphQLClient) -> None:
    _, cache = document_caches(client)
    client.data(PING)
    hits = cache.hits

    client.data(PING)
    client.data(PING)

    assert cache.hits == hits + 2


class TestGraphQLResponseMediaType:
    """Clients accepting application/graphql-response+json get the spec's status codes."""

    @pytest.fixture
    def modern(self, client: GraphQLClient) -> GraphQLClient:
        return client

    def post(self, client: GraphQLClient, query: str, **variables: object):  # type: ignore[no-untyped-def]
        return client.http.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers=client.headers | {"accept": f"{GRAPHQL_RESPONSE}, application/json;q=0.9"},
        )

    @pytest.mark.parametrize(
        ("query", "variables", "code"),
        [
            ("{ conversation(", {}, "GRAPHQL_PARSE_FAILED"),
            ("{ nope }", {}, "GRAPHQL_VALIDATION_FAILED"),
            ("query ($id: UUID!) { conversation(id: $id) { id } }", {"id": "x"}, "BAD_USER_INPUT"),
        ],
    )
    def test_request_errors_are_400_without_data(
        self, modern: GraphQLClient, query: str, variables: dict[str, str], code: str
    ) -> None:
        response = self.post(modern, query, **variables)
        assert response.status_code == 400
        assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
        body = response.json()
        assert "data" not in body
        assert body["errors"][0]["extensions"]["code"] == code

    def test_field_errors_are_200_with_data(self, modern: GraphQLClient) -> None:
        unknown = "00000000-0000-4000-8000-000000000000"
        query = f'mutation {{ adminConversation(customerId: "{unknown}") {{ created }} }}'
        response = self.post(modern, query)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
        assert response.json()["data"] is None
        assert response.json()["errors"][0]["extensions"]["code"] == "CUSTOMER_NOT_FOUND"

    def test_plain_json_clients_keep_200_and_request_errors_have_no_data(
        self, client: GraphQLClient
    ) -> None:
        for query in ("{ nope }", "{ nope", "query ($c: UUID!) { conversation(id: $c) { id } }"):
            response = client.http.post("/graphql", json={"query": query}, headers=client.headers)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("application/json")
            assert "data" not in response.json()  # parse, validation, variables: never ran


def test_cors_answers_only_listed_origins(db: Settings) -> None:
    for client in app_client(db.replaced(cors_origins=("https://app.example",))):
        preflight = {
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type",
        }
        allowed = client.http.options(
            "/graphql", headers={"origin": "https://app.example"} | preflight
        )
        denied = client.http.options(
            "/graphql", headers={"origin": "https://evil.example"} | preflight
        )
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        assert "access-control-allow-origin" not in denied.headers
        simple = client.http.post(
            "/graphql",
            json={"query": PING},
            headers=client.headers | {"origin": "https://evil.example"},
        )
        assert "access-control-allow-origin" not in simple.headers


def test_without_cors_origins_no_browser_origin_is_allowed(client: GraphQLClient) -> None:
    preflight = client.http.options(
        "/graphql",
        headers={"origin": "https://app.example", "access-control-request-method": "POST"},
    )
    simple = client.http.post(
        "/graphql", json={"query": PING}, headers=client.headers | {"origin": "https://app.example"}
    )
    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.status_code == 405  # no CORS answer: the route takes GET and POST only
    assert simple.status_code == 200 and "access-control-allow-origin" not in simple.headers


def test_production_hides_the_schema(production: GraphQLClient) -> None:
    introspection = production.post("{ __schema { queryType { name } } }")
    assert "data" not in introspection
    assert {e["extensions"]["code"] for e in introspection["errors"]} == {
        "GRAPHQL_VALIDATION_FAILED"
    }
    assert production.http.get("/graphql", headers={"accept": "text/html"}).status_code == 404
    for query in [
        "{ integrit { orphanedConversationCount } }",
        '{ conversation(idd: "00000000-0000-4000-8000-000000000000") { id } }',
    ]:
        body = production.post(query)
        assert body["errors"] and "Did you mean" not in str(body["errors"])
    still_serving(production)


def test_production_refuses_to_start_without_a_key() -> None:
    with pytest.raises(ConfigError, match="JWT_SECRET or JWT_JWKS"):
        Settings.from_env({"APP_ENV": "production"})


def test_production_serves_metrics_only_with_a_token_or_an_explicit_trusted_network() -> None:
    production = {"APP_ENV": "production", "JWT_SECRET": "s" * 32}
    with pytest.raises(SystemExit, match=r"METRICS_TOKEN or METRICS_UNPROTECTED=true"):
        create_app(Settings.from_env(production))
    for allowed in ({"METRICS_TOKEN": "scrape-me"}, {"METRICS_UNPROTECTED": "true"}):
        assert create_app(Settings.from_env(production | allowed)) is not None
    with pytest.raises(ConfigError, match="METRICS_UNPROTECTED: expected true or false"):
        Settings.from_env(production | {"METRICS_UNPROTECTED": "maybe"})


def test_health_endpoints_stay_open_and_metrics_need_their_token(
    production: GraphQLClient,
) -> None:
    http = production.http
    assert http.get("/live").json() == {"status": "ok"}
    assert http.get("/ready").json() == {"status": "ok"}
    assert http.get("/metrics").status_code == 401
    metrics = http.get("/metrics", headers={"authorization": "Bearer scrape-me"})
    assert metrics.status_code == 200
    assert "python_info" in metrics.text


def test_metrics_are_open_without_a_metrics_token(client: GraphQLClient) -> None:
    assert client.http.get("/metrics").status_code == 200


def test_ready_is_503_when_the_database_is_unreachable(db: Settings) -> None:
    unreachable = db.replaced(database_url="postgresql://postgres@127.0.0.1:9/none")
    for client in app_client(unreachable):
        assert client.http.get("/live").status_code == 200
        response = client.http.get("/ready")
        assert (response.status_code, response.json()) == (503, {"status": "unavailable"})


def test_fragments_that_spread_each_other_are_measured_once_and_refused(
    client: GraphQLClient,
) -> None:
    levels = 15  # expands to 3**15 selections if each spread were walked again
    fragments = " ".join(
        f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} ...F{i + 1} }}" for i in range(levels)
    )
    bomb = f"{{ ...F0 }} {fragments} fragment F{levels} on Query {{ __typename }}"

    error = client.error(bomb)

    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "fields once fragments are expanded. Allowed: 2000" in error["message"]
    still_serving(client)


@pytest.mark.parametrize(
    "body",
    [
        b'{"query": "{ __typename }", "variables": {"a": ' + b"[" * 30_000 + b"]" * 30_000 + b"}}",
        b'{"query": "{ __typename }\xff\xfe"}',
    ],
    ids=["deeply-nested-json", "invalid-utf8"],
)
def test_malformed_bodies_are_400_not_500(client: GraphQLClient, body: bytes) -> None:
    response = client.http.post(
        "/graphql", content=body, headers=client.headers | {"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    still_serving(client)


def test_large_documents_are_not_kept_in_the_caches(db: Settings) -> None:
    for client in app_client(db.replaced(max_body_bytes=4 * 1024 * 1024)):
        large_documents_are_not_kept(client)


def large_documents_are_not_kept(client: GraphQLClient) -> None:
    parsed, validated = document_caches(client)
    sizes = len(parsed), len(validated)
    literal = "x" * (parsed.max_bytes // MAX_ENTRY_SHARE // 2)  # the text and its decoded copy

    error = client.error(f'{{ conversation(id: "{literal}") {{ id }} }}')

    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert len(error["message"]) < 1000  # the value is not echoed back in full
    assert (len(parsed), len(validated)) == sizes


def test_the_parser_cache_keeps_hitting(client: GraphQLClient) -> None:
    cache, _ = document_caches(client)
    client.data(PING)
    hits = cache.hits
    client.data(PING)
    assert cache.hits == hits + 1


def test_unused_variables_are_validation_errors_not_input_errors(client: GraphQLClient) -> None:
    error = client.error("query ($unused: Int) { integrity { orphanedConversationCount } }")
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


def test_refusals_use_the_media_type_the_client_accepts(client: GraphQLClient) -> None:
    response = client.http.post(
        "/graphql",
        content=b"{not json",
        headers=client.headers | {"content-type": "application/json", "accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    unsupported = client.http.post(
        "/graphql", content=b"query", headers=client.headers | {"content-type": "text/csv"}
    )
    assert unsupported.status_code == 415
    assert unsupported.json()["errors"][0]["extensions"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


def both_paths(pair: Pair) -> dict[str, TestClient]:
    return {"fast": pair.fast, "generic": pair.generic}


def access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The access-log lines captured (the test sets the level with ``caplog.set_level``)."""
    return [r for r in caplog.records if r.name == "helpline.access"]


@pytest.mark.parametrize("name", [["x"], {"x": 1}, 7, 1.5, True], ids=repr)
def test_a_non_string_operation_name_is_a_request_error(
    pair: Pair, caplog: pytest.LogCaptureFixture, name: object
) -> None:
    caplog.set_level(logging.INFO)
    for path, http in both_paths(pair).items():
        caplog.clear()
        for token in (service_token(), None):
            headers = {"authorization": f"Bearer {token}"} if token else {}
            response = http.post(
                "/graphql", json={"query": "{ __typename }", "operationName": name}, headers=headers
            )
            assert response.status_code == 400, (path, response.text)
            assert response.headers["content-type"].startswith("application/json")
            (error,) = response.json()["errors"]
            assert error["extensions"]["code"] == "BAD_REQUEST", path
            assert "operationName" in error["message"]
            assert response.headers["x-request-id"]
        lines = access_lines(caplog)
        assert [(r.status, r.error_codes) for r in lines] == [(400, ["BAD_REQUEST"])] * 2, path  # type: ignore[attr-defined]
        assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], path


JSON_VALUES: list[object] = [None, True, 0, -1.5, "", "text", [], ["a", 1], {}, {"a": [1]}]


@pytest.mark.parametrize("key", ["query", "operationName", "variables", "extensions", "other"])
def test_no_request_envelope_answers_500(pair: Pair, key: str) -> None:
    """Every top-level key with every JSON type: an answer or a coded 400, never a 500."""
    headers = {"authorization": f"Bearer {service_token()}"}
    for http in both_paths(pair).values():
        for value in JSON_VALUES:
            body = {"query": "query Ping { __typename }", key: value}
            response = http.post("/graphql", json=body, headers=headers)
            assert response.status_code in (200, 400), (key, value, response.text)
            assert "x-request-id" in response.headers
            answer = response.json()
            assert answer.get("data") or answer["errors"][0]["extensions"]["code"], answer


def test_a_body_that_is_not_an_object_is_a_request_error(
    pair: Pair,
) -> None:
    headers = {"authorization": f"Bearer {service_token()}", "content-type": "application/json"}
    for http in both_paths(pair).values():
        for bare in JSON_VALUES:
            if isinstance(bare, dict):
                continue
            response = http.post("/graphql", content=json.dumps(bare), headers=headers)
            assert response.status_code == 400, (bare, response.text)
            assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
            assert "x-request-id" in response.headers


def test_production_runs_a_query_link_even_for_a_browser(production: GraphQLClient) -> None:
    response = production.http.get(
        "/graphql",
        params={"query": "{ __typename }"},
        headers={"accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"__typename": "Query"}}  # no playground in production


DEMO_PATHS = ("/demo/chat", "/demo/inbox", "/demo/static/chat.js")


def test_the_demo_pages_are_served_in_development(client: GraphQLClient) -> None:
    for path in DEMO_PATHS:
        assert client.http.get(path).status_code == 200


def test_the_demo_pages_are_not_served_in_production(production: GraphQLClient) -> None:
    for path in DEMO_PATHS:
        assert production.http.get(path).status_code == 404
