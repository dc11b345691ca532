"""Security headers on every response, a Content-Security-Policy the web app and
GraphiQL pass, and CORS only for the configured origins."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Mapping
from html.parser import HTMLParser
from pathlib import Path

import httpx2
import pytest
from starlette.testclient import TestClient

from careforall.db import web_dir
from careforall.settings import Settings

SPA = "https://spa.example.org"
ELSEWHERE = "https://evil.example.net"
QUERY = {"query": "{ __typename }"}


def directives(policy: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        parsed[name] = sources
    return parsed


def assert_protective_headers(headers: Mapping[str, str]) -> None:
    h = {name.lower(): value for name, value in headers.items()}
    assert h["x-content-type-options"] == "nosniff"
    assert h["x-frame-options"] == "DENY"
    assert h["referrer-policy"] == "no-referrer"
    csp = directives(h["content-security-policy"])
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["default-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"]


# --- every response ----------------------------------------------------------------


def test_every_kind_of_response_has_the_headers(
    app_factory: Callable[..., TestClient],
) -> None:
    client = app_factory(max_body_bytes=1000)
    responses = [
        client.get("/"),
        client.get("/app.js"),
        client.post("/graphql", json=QUERY),
        client.post("/graphql", content=b"{", headers={"content-type": "text/plain"}),
        client.post("/graphql", content=b"x" * 2000),
        client.get("/healthz"),
        client.get("/metrics"),
        client.post("/webhooks/payments", content=b"{}"),
    ]
    assert [r.status_code for r in responses] == [
        200,
        200,
        200,
        400,
        413,
        200,
        200,
        400,
    ]
    for response in responses:
        assert_protective_headers(response.headers)


def test_an_endpoints_own_protective_header_is_replaced_not_repeated(
    client: TestClient,
) -> None:
    # The reset-password page sets its own Referrer-Policy (the same value).
    response = client.get("/reset-password?token=x")

    assert response.status_code == 200
    assert response.headers.get_list("referrer-policy") == ["no-referrer"]
    assert len(response.headers.get_list("content-security-policy")) == 1
    assert response.headers["cache-control"] == "no-store"


def test_the_app_policy_allows_only_this_origin(client: TestClient) -> None:
    csp = directives(client.get("/").headers["content-security-policy"])
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'", "ws://testserver", "wss://testserver"]
    assert csp["base-uri"] == ["'self'"] and csp["form-action"] == ["'self'"]


def test_a_strange_host_header_adds_nothing_to_the_policy(client: TestClient) -> None:
    response = client.get("/", headers={"host": "evil.example; script-src *"})
    csp = directives(response.headers["content-security-policy"])
    assert csp["connect-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]


# --- the web app passes its own policy -----------------------------------------------


class PageParts(HTMLParser):
    """What in a page a strict CSP (no inline script or style) would block."""

    def __init__(self) -> None:
        super().__init__()
        self.inline_scripts: list[str] = []
        self.blocked: list[str] = []
        self.external: list[tuple[str, dict[str, str | None]]] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        for name in attributes:
            if name.startswith("on"):
                self.blocked.append(f"{tag} {name}=")
        if "style" in attributes:
            self.blocked.append(f"{tag} style=")
        if tag == "style":
            self.blocked.append("<style>")
        url = attributes.get("src") or (
            attributes.get("href") if tag == "link" else None
        )
        if url:
            self.external.append((url, attributes))
        self._in_script = tag == "script" and "src" not in attributes
        if self._in_script:
            self.inline_scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline_scripts[-1] += data


def test_the_web_app_has_nothing_its_policy_blocks(client: TestClient) -> None:
    page = PageParts()
    page.feed(client.get("/").text)
    assert page.inline_scripts == [] and page.blocked == []
    assert page.external, "the page loads its script and styles"
    for url, _ in page.external:
        assert url.startswith("/") and not url.startswith("//"), url
        assert client.get(url).status_code == 200
    for script in Path(web_dir()).rglob("*.js"):
        source = script.read_text()
        # What script-src 'self' and style-src 'self' would stop at run time.
        for blocked in ("eval(", "new Function", 'setAttribute("style"', 'style="'):
            assert blocked not in source, (script.name, blocked)
        for url in re.findall(r"fetch\(\s*[\"'`]([^\"'`]+)", source):
            assert url.startswith("/"), url  # same origin: connect-src 'self'


def test_graphiql_gets_a_policy_its_page_passes(client: TestClient) -> None:
    response = client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert_protective_headers(response.headers)
    csp = directives(response.headers["content-security-policy"])
    page = PageParts()
    page.feed(response.text)
    # Inline scripts run by their hash only; 'unsafe-inline' is not needed for them.
    assert "'unsafe-inline'" not in csp["script-src"]
    for body in page.inline_scripts:
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp["script-src"]
    # Its CDN files are pinned with Subresource Integrity and allowed by origin.
    assert page.external
    for url, attributes in page.external:
        if url.startswith("data:image/"):  # its icon
            assert "data:" in csp["img-src"]
            continue
        assert url.startswith("https://unpkg.com/"), url
        assert (attributes.get("integrity") or "").startswith("sha384-"), url
    assert "https://unpkg.com" in csp["script-src"]
    assert "https://unpkg.com" in csp["style-src"]
    assert csp["connect-src"] == ["'self'", "ws://testserver", "wss://testserver"]


def test_the_relaxed_policy_is_for_graphiql_only(client: TestClient) -> None:
    for response in (
        client.post("/graphql", json=QUERY),
        client.get("/graphql", params=QUERY, headers={"Accept": "application/json"}),
        client.get("/"),
    ):
        csp = directives(response.headers["content-security-policy"])
        assert csp["script-src"] == ["'self'"], response.url


# --- CORS ---------------------------------------------------------------------------


def preflight(client: TestClient, origin: str) -> httpx2.Response:
    return client.options(
        "/graphql",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def test_without_configured_origins_only_the_same_origin_is_served(
    client: TestClient,
) -> None:
    response = preflight(client, SPA)
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
    simple = client.post("/graphql", json=QUERY, headers={"Origin": SPA})
    assert "access-control-allow-origin" not in simple.headers
    assert_protective_headers(response.headers)


@pytest.fixture
def spa_client(app_factory: Callable[..., TestClient]) -> TestClient:
    return app_factory(cors_origins=(SPA,))


def test_a_configured_origin_passes_the_preflight(spa_client: TestClient) -> None:
    response = preflight(spa_client, SPA)
    assert response.status_code == 200
    headers = response.headers
    assert headers["access-control-allow-origin"] == SPA
    assert "POST" in headers["access-control-allow-methods"]
    allowed = headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "access-control-allow-credentials" not in headers  # tokens, not cookies
    answer = spa_client.post("/graphql", json=QUERY, headers={"Origin": SPA})
    assert answer.headers["access-control-allow-origin"] == SPA
    assert answer.json() == {"data": {"__typename": "Query"}}
    # A web app on another origin can read an anonymous token's renewal.
    exposed = answer.headers["access-control-expose-headers"].lower()
    assert "x-renewed-token" in exposed


def test_other_origins_are_refused(spa_client: TestClient) -> None:
    response = preflight(spa_client, ELSEWHERE)
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
    simple = spa_client.post("/graphql", json=QUERY, headers={"Origin": ELSEWHERE})
    assert "access-control-allow-origin" not in simple.headers


def test_cors_origins_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {"CAREFORALL_CORS_ORIGINS": f"{SPA}, https://m.example.org ,"}
    )
    assert settings.cors_origins == (SPA, "https://m.example.org")
    assert Settings.from_env({}).cors_origins == ()
