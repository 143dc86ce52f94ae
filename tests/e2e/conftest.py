"""HTTP clients for the app: in-process (Starlette's TestClient) and a real uvicorn server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from gql.app import create_app
from repo.config import Settings


class GraphQLClient:
    """Posts GraphQL operations the way a frontend does."""

    def __init__(self, http: TestClient) -> None:
        self.http = http

    def post(self, query: str, **variables: Any) -> dict[str, Any]:
        response = self.http.post("/graphql", json={"query": query, "variables": variables})
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
    with TestClient(create_app(db), raise_server_exceptions=False) as http:
        yield GraphQLClient(http)
