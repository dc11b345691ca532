"""careforall/http_protocol.py: each answer leaves in one write, nothing is
held past the event loop's round, and a WebSocket gets the real transport."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from uvicorn.config import Config
from uvicorn.lifespan.off import LifespanOff
from uvicorn.server import ServerState

from careforall.http_protocol import HttpProtocol, JoinedWrites

App = Callable[[Any, Any, Any], Awaitable[None]]

GET = b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n"


class Transport(asyncio.Transport):
    """The connection as the protocol sees it: what was written, call by call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, bytes]] = []
        self.closed = False
        self.protocol: Any = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.calls.append(("write", bytes(data)))

    def writelines(self, list_of_data: Any) -> None:
        self.calls.append(("writelines", b"".join(list_of_data)))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def written(self) -> bytes:
        return b"".join(data for _, data in self.calls)


def serve_once(
    app: App,
    request: bytes,
    *,
    rounds: float = 0.05,
    transport: Transport | None = None,
) -> Transport:
    """Feed `request` to a connection of HttpProtocol serving `app`, let the
    loop run for `rounds` seconds, and return the connection's transport."""
    transport = transport or Transport()

    async def run() -> None:
        config = Config(
            app=app,
            ws="careforall.ws_protocol:WebSocketProtocol",
            ws_per_message_deflate=False,
            lifespan="off",
            log_config=None,
        )
        config.load()
        protocol = HttpProtocol(
            config=config,
            server_state=ServerState(),
            app_state=LifespanOff(config).state,
        )
        protocol.connection_made(transport)
        protocol.data_received(request)
        await asyncio.sleep(rounds)

    asyncio.run(run())
    return transport


async def at_once(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")],
        }
    )
    await send({"type": "http.response.body", "body": b"hello"})


def test_an_answer_made_at_once_is_one_write_of_headers_and_body() -> None:
    transport = serve_once(at_once, GET)

    assert len(transport.calls) == 1
    kind, data = transport.calls[0]
    assert kind == "writelines"
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert data.endswith(b"\r\n\r\nhello")


def test_two_answers_on_one_connection_are_one_write_each() -> None:
    transport = serve_once(at_once, GET + GET)

    assert [kind for kind, _ in transport.calls] == ["writelines", "writelines"]
    assert transport.written().count(b"HTTP/1.1 200 OK\r\n") == 2


def test_headers_leave_when_the_round_ends_while_the_body_is_awaited() -> None:
    seen_before_body: list[bytes] = []
    connection = Transport()

    async def slow_body(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"transfer-encoding", b"chunked")],
            }
        )
        await asyncio.sleep(0.01)
        seen_before_body.append(connection.written())
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})

    transport = serve_once(slow_body, GET, transport=connection)

    # The headers were on the connection before the body was sent.
    assert seen_before_body[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert seen_before_body[0].endswith(b"\r\n\r\n")
    # Then each chunk follows, and the answer is whole and in order.
    assert transport.written().endswith(b"\r\n\r\n1\r\na\r\n1\r\nb\r\n0\r\n\r\n")


def test_a_connection_closed_after_its_answer_gets_the_whole_answer_first() -> None:
    transport = serve_once(
        at_once, b"GET / HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n"
    )

    assert transport.closed
    assert transport.written().endswith(b"\r\n\r\nhello")


def test_a_held_write_is_dropped_when_the_connection_is_gone() -> None:
    async def run() -> Transport:
        transport = Transport()
        joined = JoinedWrites(transport, asyncio.get_running_loop())
        joined.write(b"headers")
        transport.closed = True
        await asyncio.sleep(0)
        return transport

    assert asyncio.run(run()).calls == []


def test_a_websocket_upgrade_hands_over_the_connections_own_transport() -> None:
    async def refuses(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "websocket.close"})

    transport = serve_once(
        refuses,
        b"GET /graphql HTTP/1.1\r\nHost: example.org\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n",
        rounds=0,
    )

    assert transport.protocol is not None
    assert transport.protocol.transport is transport
