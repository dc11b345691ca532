"""Speaking GraphQL to the app: `GQL` over Starlette's TestClient, `ServerGQL`
over a real socket, and the admin account the test settings create."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
from starlette.testclient import TestClient, WebSocketTestSession

ADMIN_EMAIL = "admin@example.org"
ADMIN_PASSWORD = "admin-password-1"


class GQL:
    """POST a GraphQL document; returns the JSON body."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def __call__(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        token: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self.client.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers=headers,
        )
        assert response.status_code < 500, response.text
        body: dict[str, Any] = response.json()
        return body

    def ok(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        token: str | None = None,
    ) -> dict[str, Any]:
        body = self(query, variables, token)
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    def code(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        token: str | None = None,
    ) -> str:
        """The first error's contract code (the call must have failed)."""
        body = self(query, variables, token)
        assert body.get("errors"), f"expected an error, got {body}"
        return str(body["errors"][0]["extensions"]["code"])


class ServerGQL(GQL):
    """The `GQL` helper over a real socket (httpx.Client has TestClient's `post`)."""

    def __init__(self, client: httpx.Client) -> None:  # noqa: D107
        self.client = client  # type: ignore[assignment]


def receive(ws: WebSocketTestSession, timeout: float = 5.0) -> dict[str, Any]:
    """The next message of an in-process socket (`client.websocket_connect`),
    or a failure after `timeout` (never a hung test)."""

    async def get() -> Any:
        with anyio.fail_after(timeout):
            return await ws._send_rx.receive()

    message = ws.portal.call(get)
    assert message["type"] == "websocket.send", message
    value: dict[str, Any] = json.loads(message["text"])
    return value
