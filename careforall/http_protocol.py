"""uvicorn's HTTP protocol (httptools), writing each response in one system call.

uvicorn writes a response's status line and headers as soon as the app sends
`http.response.start`, and its body as a second write: two `write` calls for
every answer, each of which hands the bytes to the kernel at once. On a
loopback or LAN connection that second call is a tenth of a cached read's CPU.

Here the connection's transport keeps the first write of a burst back until
the next write, then hands both over together (`writelines`: one `writev`),
or until the event loop's current round ends, whichever comes first. A body
sent in the same step as its headers (every answer the app makes at once)
therefore leaves in one call; a body that is awaited still follows its
headers at once when it comes, and the headers are not held past the round.
A WebSocket upgrade gets the connection's own transport.

`careforall serve` passes it to uvicorn by import path (as a string, so that
`--workers` processes import it too).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class JoinedWrites:
    """A transport that holds one write back to join it with the next.

    Everything but writing and closing is the connection's own transport.
    """

    __slots__ = ("_loop", "_pending", "transport")

    def __init__(
        self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.transport = transport
        self._loop = loop
        self._pending: bytes | None = None

    def write(self, data: bytes) -> None:
        pending = self._pending
        if pending is None:
            self._pending = data
            self._loop.call_soon(self.flush)
            return
        self._pending = None
        self.transport.writelines((pending, data))

    def flush(self) -> None:
        """Hand what is held back to the connection (nothing if it closed)."""
        pending, self._pending = self._pending, None
        if pending is not None and not self.transport.is_closing():
            self.transport.write(pending)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class HttpProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = JoinedWrites(transport, self.loop)  # type: ignore[assignment]

    def handle_websocket_upgrade(self) -> None:
        # The WebSocket protocol takes over the connection's own transport.
        transport = self.transport
        if isinstance(transport, JoinedWrites):
            transport.flush()
            self.transport = transport.transport
        super().handle_websocket_upgrade()
