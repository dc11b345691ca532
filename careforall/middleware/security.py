"""HTTP protections for every response and request: security headers, CORS and a
request body size limit (pure ASGI middleware)."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.http.ides import get_graphql_ide_html

from careforall.middleware.http import HTTPMiddleware
from careforall.services.tokens import RENEWED_TOKEN_HEADER
from careforall.settings import Settings

_CDN = "https://unpkg.com"
_HOST = re.compile(
    r"[A-Za-z0-9.\-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?"
)


def _inline_script_hashes(html: str) -> str:
    """CSP sources for the inline scripts of a page we serve but do not write."""
    bodies = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", html, re.S)
    return " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'"
        for b in bodies
    )


# GraphiQL (GET /graphql in a browser) is Strawberry's page: React and GraphiQL from
# unpkg, pinned with Subresource Integrity, plus one inline script allowed by its
# hash. Its styles and fonts come from the same CDN; its editor sets inline styles.
_GRAPHIQL_SCRIPTS = _inline_script_hashes(get_graphql_ide_html("graphiql"))


def content_security_policy(host: str | None, *, graphiql: bool = False) -> str:
    """The app's pages load only from this origin; GraphiQL also from its CDN."""
    sockets = ""
    if host is not None and _HOST.fullmatch(host):
        # Older browsers do not count ws(s) to the same host as 'self'.
        sockets = f" ws://{host} wss://{host}"
    if graphiql:
        scripts = f"'self' {_CDN} {_GRAPHIQL_SCRIPTS}"
        styles = f"'self' {_CDN} 'unsafe-inline'"
        fonts = f"'self' {_CDN} data:"
        images = f"'self' {_CDN} data:"
    else:
        scripts = styles = fonts = "'self'"
        images = "'self' data:"
    return (
        f"default-src 'self'; script-src {scripts}; style-src {styles}; "
        f"font-src {fonts}; img-src {images}; connect-src 'self'{sockets}; "
        "object-src 'none'; base-uri 'self'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


@functools.lru_cache(maxsize=256)
def _policy_header(host: str | None, graphiql: bool) -> bytes:
    """The Content-Security-Policy value for a Host header (a few are seen)."""
    return content_security_policy(host, graphiql=graphiql).encode("latin-1")


# The same on every answer, replacing any an endpoint set.
_FIXED_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
_SET_HERE = frozenset({b"content-security-policy", *(n for n, _ in _FIXED_HEADERS)})


class SecurityHeaders(HTTPMiddleware):
    """Adds CSP, nosniff, framing and referrer headers to every HTTP response."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        host = Headers(scope=scope).get("host")
        on_graphql = scope["path"] == "/graphql"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Raw pairs, once over the list: MutableHeaders' assignments
                # walked it once for each header (every answer pays for it).
                graphiql = False
                headers: list[tuple[bytes, bytes]] = []
                for name, value in message.get("headers", ()):
                    lower = name.lower()
                    if lower in _SET_HERE:
                        continue
                    if on_graphql and lower == b"content-type":
                        graphiql = value.startswith(b"text/html")
                    headers.append((name, value))
                headers.append(
                    (b"content-security-policy", _policy_header(host, graphiql))
                )
                headers.extend(_FIXED_HEADERS)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodySizeLimit(HTTPMiddleware):
    """Refuses request bodies over `max_bytes` with 413, before any endpoint reads them.

    A declared Content-Length over the limit is refused unread; otherwise the body
    is read here (at most `max_bytes` of it) and handed on, so a chunked body is
    counted as it streams in.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        larger: tuple[tuple[str, int], ...] = (),
    ) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes
        # (path pattern, limit): paths that take bigger bodies, such as uploads.
        self.larger = tuple((re.compile(path), limit) for path, limit in larger)

    def _limit(self, path: str) -> int:
        for pattern, limit in self.larger:
            if pattern.fullmatch(path):
                return limit
        return self.max_bytes

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        max_bytes = self._limit(scope["path"])
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            await self._refuse(send, max_bytes)
            return
        received: list[Message] = []
        size = 0
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > max_bytes:
                await self._refuse(send, max_bytes)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return received.pop(0) if received else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, max_bytes: int) -> None:
        error = {
            "message": (
                f"The request body is larger than the limit of {max_bytes} bytes."
            ),
            "extensions": {"code": "BAD_REQUEST"},
        }
        body = json.dumps({"errors": [error]}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def security_middleware(
    settings: Settings, larger_bodies: tuple[tuple[str, int], ...] = ()
) -> list[Middleware]:
    """Outermost first: headers on every answer, then CORS, then the body limit
    (`larger_bodies`: path patterns allowed more, with their limits)."""
    return [
        Middleware(SecurityHeaders),
        Middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            # A used anonymous token comes back renewed in this header.
            expose_headers=[RENEWED_TOKEN_HEADER],
            max_age=600,
        ),
        Middleware(
            BodySizeLimit, max_bytes=settings.max_body_bytes, larger=larger_bodies
        ),
    ]
