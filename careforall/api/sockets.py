"""Caps on live connections: WebSockets per address and subscriptions per process.

A WebSocket over its address's cap is accepted and closed at once with 4429
(graphql-transport-ws's "too many requests" code, which it also uses for a
second connection_init), so a client hears why instead of a bare handshake
failure. A subscription over the process's cap gets its operation's `error`
message, RATE_LIMITED, and the socket stays open for the others it carries.
Both are counted per app (a process serves one app; tests make several).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket

from careforall.api.ratelimit import client_address
from careforall.domain.errors import RateLimited

TOO_MANY_CONNECTIONS = 4429
SUBSCRIPTION_RETRY_SECONDS = 60


class SocketLimits:
    """The live WebSockets by address and the live subscriptions of one app."""

    def __init__(self) -> None:
        self.connections: Counter[str] = Counter()
        self.subscriptions = 0


# For a schema run without an app (a test subscribing through the schema).
_WITHOUT_APP = SocketLimits()


def socket_limits(app: Any) -> SocketLimits:
    """The app's counters, made on first use."""
    if app is None:
        return _WITHOUT_APP
    limits: SocketLimits | None = getattr(app.state, "socket_limits", None)
    if limits is None:
        limits = app.state.socket_limits = SocketLimits()
    return limits


async def admit_socket(socket: WebSocket, serve: Callable[[], Awaitable[Any]]) -> Any:
    """Serve a WebSocket unless its address has its cap of them open already.

    The cap is a per-address limit like the rate limits, and off with them
    (CAREFORALL_RATE_LIMITS=off); 0 is no cap.
    """
    settings = socket.app.state.runtime.settings
    cap = settings.ws_max_connections_per_address if settings.rate_limits else 0
    if not cap:
        return await serve()
    limits = socket_limits(socket.app)
    address = client_address(socket, settings.trusted_proxies)
    if limits.connections[address] >= cap:
        offered = socket.scope.get("subprotocols") or []
        await socket.accept(subprotocol=offered[0] if offered else None)
        await socket.close(
            code=TOO_MANY_CONNECTIONS,
            reason=f"Too many connections from this address (at most {cap})",
        )
        return None
    limits.connections[address] += 1
    try:
        return await serve()
    finally:
        limits.connections[address] -= 1
        if limits.connections[address] <= 0:
            del limits.connections[address]


class subscription_slot:  # named as the function it replaces
    """Around a subscription's life: refused (RATE_LIMITED) when the app has
    `cap` open already; 0 is no cap.

    A class rather than an @asynccontextmanager: its generator and wrapper
    would stay with each of thousands of open subscriptions.
    """

    __slots__ = ("_cap", "_limits")

    def __init__(self, socket: Any, cap: int) -> None:
        self._limits = socket_limits(getattr(socket, "app", None))
        self._cap = cap

    async def __aenter__(self) -> None:
        take_subscription(self._limits, self._cap)

    async def __aexit__(self, *exc_info: object) -> None:
        self._limits.subscriptions -= 1


def take_subscription(limits: SocketLimits, cap: int) -> None:
    """Count one more open subscription, unless `cap` are open (RATE_LIMITED);
    0 is no cap. Given back with `limits.subscriptions -= 1`."""
    if cap and limits.subscriptions >= cap:
        raise RateLimited(
            "The server has too many live updates open; try again in a minute.",
            retry_after_seconds=SUBSCRIPTION_RETRY_SECONDS,
        )
    limits.subscriptions += 1
