"""uvicorn's sans-I/O WebSocket protocol, lighter for each open connection.

A viral campaign page holds thousands of sockets open for a long time, so what
each one keeps counts: uvicorn's protocol kept an `asyncio.Queue` and an
`asyncio.Event` (about 3 KB of idle deques) and the whole handshake, request
and response headers parsed by `websockets` (about 5 KB), for the life of the
connection. This one keeps the small `signals` equivalents and lets the
handshake go once it is answered. The ASGI app sees the same scope and events.

`careforall serve` passes it to uvicorn by import path (as a string, so that
`--workers` processes import it too).
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import (
    WebSocketsSansIOProtocol,
)

from careforall.signals import Flag, Mailbox


class WebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn uses put_nowait / get / empty, and set / clear / wait.
        self.queue = Mailbox()  # type: ignore[assignment]
        self.writable = Flag(True)  # type: ignore[assignment]

    async def send(self, message: Any) -> None:
        await super().send(message)
        if self.handshake_complete and getattr(self, "response", None) is not None:
            # The 101 answer is written: neither it nor the request is read
            # again (the app has its own copy of the headers in the scope).
            # The request's headers are emptied in place, as the parser of
            # `websockets` keeps the request itself for the socket's life.
            self.request.headers.clear()
            self.request = self.response = None  # type: ignore[assignment]
