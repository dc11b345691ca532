"""The shape of this package's middleware: pure ASGI, at work on HTTP only."""

from __future__ import annotations

from abc import ABC, abstractmethod

from starlette.types import ASGIApp, Receive, Scope, Send


class HTTPMiddleware(ABC):
    """Wraps `app`; an HTTP request goes to `handle`, anything else (a WebSocket,
    the lifespan) straight on to `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    @abstractmethod
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer an HTTP request, usually by passing it on to `self.app`."""
