"""uvicorn's sans-I/O WebSocket protocol, lighter for each open connection.

A viral campaign page holds thousands of sockets open for a long time, so what
each one keeps counts: uvicorn's protocol kept an `asyncio.Queue` and an
`asyncio.Event` (about 3 KB of idle deques) and the whole handshake, request
and response headers parsed by `websockets` (about 5 KB), for the life of the
connection. This one keeps the small `signals` equivalents and lets the
handshake go once it is answered. The ASGI app sees the same scope and events.

It also offers the app a way to write a text frame at once, without a task
or an await, while the socket takes writes (`SEND_TEXT_NOW`, in the scope's
extensions): a shared subscription's push to thousands of sockets is then one
loop, not a task for each.

`careforall serve` passes it to uvicorn by import path (as a string, so that
`--workers` processes import it too).
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import (
    WebSocketsSansIOProtocol,
)

from careforall.signals import Flag, Mailbox

# The scope's extension: `send_text_now(text) -> bool`, False when the frame
# must be sent the usual way (writes paused, not accepted yet, closing, gone).
SEND_TEXT_NOW = "careforall.send_text_now"


class WebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn uses put_nowait / get / empty, and set / clear / wait.
        self.queue = Mailbox()  # type: ignore[assignment]
        self.writable = Flag(True)  # type: ignore[assignment]

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][SEND_TEXT_NOW] = self.send_text_now

    def send_text_now(self, text: str) -> bool:
        """Write a text frame now if the socket takes writes (what `send`
        does for a `websocket.send` once it need not wait)."""
        if (
            not self.writable.is_set()
            or self.disconnected
            or not self.handshake_complete
            or self.close_sent
            or self.initial_response is not None
            or self.transport.is_closing()
            # What `websockets` requires of a send (else InvalidState).
            or self.conn.state.name != "OPEN"
        ):
            return False
        self.conn.send_text(text.encode())
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True

    async def send(self, message: Any) -> None:
        await super().send(message)
        if self.handshake_complete and getattr(self, "response", None) is not None:
            # The 101 answer is written: neither it nor the request is read
            # again (the app has its own copy of the headers in the scope).
            # The request's headers are emptied in place, as the parser of
            # `websockets` keeps the request itself for the socket's life.
            self.request.headers.clear()
            self.request = self.response = None  # type: ignore[assignment]
