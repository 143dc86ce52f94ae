"""HTTP clients for the app: in-process (Starlette's TestClient) and a real uvicorn server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from starlette.testclient import TestClient

from gql.app import create_app
from gql.auth import AUTHENTICATED, SERVICE_ROLE
from gql.tokens import mint
from repo.config import Settings
from tests.conftest import TEST_JWT_SECRET


def service_token() -> str:
    return mint(TEST_JWT_SECRET, role=SERVICE_ROLE)


def user_token(user_id: UUID, **claims: Any) -> str:
    return mint(TEST_JWT_SECRET, role=AUTHENTICATED, sub=user_id, **claims)


class GraphQLClient:
    """Posts GraphQL operations the way a frontend does, as one caller (a bearer token)."""

    def __init__(self, http: TestClient, token: str | None) -> None:
        self.http = http
        self.token = token

    def as_(self, token: str | None) -> GraphQLClient:
        """The same app, called with another token (None: anonymous)."""
        return GraphQLClient(self.http, token)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    def request(self, query: str, **variables: Any) -> Any:
        return self.http.post(
            "/graphql", json={"query": query, "variables": variables}, headers=self.headers
        )

    def post(self, query: str, **variables: Any) -> dict[str, Any]:
        response = self.request(query, **variables)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        body: dict[str, Any] = response.json()
        return body

    def data(self, query: str, **variables: Any) -> dict[str, Any]:
        body = self.post(query, **variables)
        assert "errors" not in body, body
        result: dict[str, Any] = body["data"]
        return result

    def error(self, query: str, **variables: Any) -> dict[str, Any]:
        """The single error a failing operation returns."""
        body = self.post(query, **variables)
        (error,) = body["errors"]
        assert isinstance(error["extensions"]["code"], str)
        return dict(error)


@pytest.fixture
def client(db: Settings) -> Iterator[GraphQLClient]:
    """The app on the test database, called by an operator (service_role token)."""
    with TestClient(create_app(db), raise_server_exceptions=False) as http:
        yield GraphQLClient(http, service_token())
